// A Hugging Face Llama folder (plus, optionally, a PEFT adapter folded in on
// the fly as `llamaft merge` folds it) as one GGUF file that llama.cpp,
// Ollama and LM Studio run: what `llamaft export --format gguf` and
// `output.gguf` write.
//
// The file is what llama.cpp's own tools make of the same folder:
//   - f32, f16, bf16, q8_0: convert_hf_to_gguf.py --outtype TYPE (2-D
//     weights in TYPE, norms and other 1-D tensors F32; q8_0 rows that are
//     not whole blocks of 32 fall back to F16);
//   - q4_0, q4_k_m: llama-quantize of the f32 file with that ftype and no
//     importance matrix (llama_tensor_get_type's choice per tensor, including
//     its fallbacks for rows that are not whole 256-value super-blocks);
// with the metadata the converter writes for the llama architecture, the
// tokenizer (data/gguf_vocab.hpp), llama.cpp's q/k row interleave, Llama 3's
// RoPE scaling as rope_freqs.weight, no output.weight for tied embeddings,
// and the tensors in the order llama.cpp's loader sorts them. Quantized
// blocks come from io/gguf_quantize.hpp (ggml's reference quantizers).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/llama_config.hpp"

namespace llamaft {

enum class GgufOutType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K_M };

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"; anything else is refused
// with the list.
GgufOutType parse_gguf_outtype(const std::string& name);
const char* gguf_outtype_name(GgufOutType t);
// general.file_type: llama.cpp's llama_ftype number.
uint32_t gguf_file_type(GgufOutType t);

struct GgufExportSource {
  std::string model_dir;    // HF folder: config.json + safetensors
  std::string adapter_dir;  // a PEFT LoRA adapter folded in (as merge does); "" for none
  std::string tokenizer;    // tokenizer file or folder; "" means model_dir
  std::string name;         // general.name; "" means the model folder's name
};

struct GgufExportReport {
  uint64_t bytes = 0;
  double seconds = 0;
  int64_t parameters = 0;
  std::map<std::string, int> tensor_types;  // "Q4_K" -> count
  std::string tokenizer;                    // what the tokenizer metadata came from
  std::vector<std::string> notes;           // what was skipped (as the converter skips it)
};

// Everything that can fail before weights are read: the config, the adapter's
// config, the tokenizer, the outtype's per-tensor types. Cheap; `train` runs
// it before the first step when output.gguf is set.
void check_gguf_exportable(const GgufExportSource& src, GgufOutType type);

// Writes `out_path` atomically (out_path.partial, fsync, rename). An existing
// file is replaced only with `force`; the output must not be a file of the
// model or adapter folder. Non-finite weights are refused (exit 3).
GgufExportReport export_gguf(const GgufExportSource& src, GgufOutType type, const std::string& out_path, bool force);

}  // namespace llamaft
