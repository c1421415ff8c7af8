// output.gguf: the GGUF file a training run writes beside its export
// (output.dir/model.gguf), as `llamaft export` would write it from the
// run's outputs: full fine-tuning exports output.dir/model; under LoRA the
// base model with output.dir/adapter folded in, as `llamaft merge` folds it.
// The tokenizer is model.tokenizer, or the base model's own.
#pragma once

#include "train/settings.hpp"

namespace llamaft {

// Before training (every rank, no I/O beyond config and tokenizer files):
// throws for a model or tokenizer the GGUF cannot express, so a long run
// never ends in an export failure. No-op when output.gguf = none.
void check_training_gguf(const TrainSettings& s);

// After the export (rank 0, after the last collective). No-op when
// output.gguf = none or output.export = false.
void write_training_gguf(const TrainSettings& s);

}  // namespace llamaft
