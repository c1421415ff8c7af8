// Hugging Face model directories: config.json plus model.safetensors (or
// sharded model-0000k-of-0000n.safetensors with model.safetensors.index.json).
// Names and shapes are checked against the config; dtypes F32/BF16/F16 load.
#pragma once

#include "quant/quant.hpp"

#include <functional>
#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "io/safetensors.hpp"
#include "model/llama.hpp"
#include "model/llama_config.hpp"
#include "model/param_layout.hpp"

namespace llamaft {

LlamaConfig read_model_config(const std::string& model_dir);

// Loads every tensor into resident unit buffers (one process holds it all).
void load_hf_weights(const std::string& model_dir, const ParamLayout& layout, Backend& be,
                     ResidentParams& params);

// Loads a PEFT LoRA adapter folder into the LoRA units of resident params
// (the layout must have been built with the adapter's LoraSpec).
void load_adapter(const std::string& adapter_dir, const ParamLayout& layout, Backend& be, ResidentParams& params);

// The adapter is read exactly: every tensor of adapter_model.safetensors must
// be a LoRA slot of `layout` (built from adapter_config.json), and every slot
// must be in the file. Throws naming the first that is not.
void check_adapter_tensors(const io::SafetensorsFile& file, const ParamLayout& layout, const std::string& adapter_dir);

// The adapter file's tensor for a LoRA slot, checked by name and shape.
const io::TensorInfo& adapter_tensor(const io::SafetensorsFile& file, const TensorSlot& slot,
                                    const std::string& adapter_dir);

// A model resident on one process: base from `model_dir`, plus a PEFT
// adapter (unmerged) when `adapter_dir` is not empty. eval, generate, merge.
struct ResidentModel {
  LlamaConfig config;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<ResidentParams> params;
};
// base_quant (nf4|int8): the base's linear weights as a QLoRA / int8 LoRA run
// sees them (quantized and dequantized, bit for bit as training does), so an
// adapter is evaluated on the base it was trained against.
ResidentModel load_resident_model(const std::string& model_dir, const std::string& adapter_dir, Backend& be,
                                  quant::Kind base_quant = quant::Kind::kNone, bool bf16 = false);

// Creates model_dir (and parents) and writes config.json (atomically).
void save_model_config(const std::string& model_dir, const LlamaConfig& cfg, bool bf16);

// Throws (exit 3) naming `what` when any of x[0..n) is NaN or infinite:
// nothing non-finite is written or used.
void require_finite(const float* x, size_t n, const std::string& what);

// Writes model.safetensors (or, when max_shard_bytes > 0 and the model is
// larger, model-0000K-of-0000N.safetensors and model.safetensors.index.json,
// split as transformers' save_pretrained splits), then config.json, each
// under a temporary name renamed into place once complete and fsynced; the
// other form's files left from an earlier write are removed. A non-finite
// weight is an error (exit 3) and leaves no new file behind. `fill(slot,
// out)` produces a tensor's values (host fp32, slot.numel() floats) one
// tensor at a time, so the whole model never needs to be in host memory.
// `before_config`, when given, runs after the weights and before config.json
// (merge writes the base's tokenizer files there).
void save_hf_model(const std::string& model_dir, const LlamaConfig& cfg, const ParamLayout& layout, bool bf16,
                   const std::function<void(const TensorSlot&, float*)>& fill, uint64_t max_shard_bytes = 0,
                   const std::function<void()>& before_config = nullptr);

// Convenience: save resident params.
void save_hf_model(const std::string& model_dir, const LlamaConfig& cfg, const ParamLayout& layout,
                   bool bf16, Backend& be, ResidentParams& params, uint64_t max_shard_bytes = 0,
                   const std::function<void()>& before_config = nullptr);

// init.max_shard_size: "5GB" (10^9), "2GiB" (2^30), a byte count, or 0 / ""
// for one file. Anything else throws naming `key`.
uint64_t parse_shard_size(const std::string& text, const std::string& key);

}  // namespace llamaft
