// Sharded model I/O. Loading: each rank reads only the byte ranges of the HF
// safetensors that its shards cover, so no rank ever holds the whole model.
// Export: rank 0 writes the header, then every writing rank pwrite()s its
// shard's slices at precomputed offsets; the model is never gathered.
#pragma once

#include <cstdint>
#include <string>

#include "model/llama_config.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// fp32 shards are loaded through a host window of this many floats (64 MiB);
// quantized units through their quantized region plus one item of fp32.
constexpr int64_t kLoadWindowFloats = int64_t{1} << 24;
constexpr size_t kLoadItemBytes = 64 * 256 * sizeof(float);  // quant::UnitCodec's largest item, in fp32
constexpr size_t kLoadReadBufferBytes = size_t{4} << 20;     // io::SafetensorsFile's conversion buffer

// Where a load's time went: reading (pread and conversion to fp32) and the
// rest (quantization, copies to the device).
struct LoadStats {
  double read_s = 0, other_s = 0;
  uint64_t bytes_read = 0;  // of the files
};

// Fills every master shard from an HF model directory (validated against cfg).
LoadStats load_sharded(const std::string& model_dir, Fsdp& fsdp, Backend& be);

// Writes config.json + model.safetensors (the base units) into dir,
// collectively, with base_dir's tokenizer files and generation_config.json
// (write_companion_files) put in before the weights are renamed into place.
void export_sharded(const std::string& dir, const LlamaConfig& cfg, Fsdp& fsdp, Backend& be, bool bf16,
                    const std::string& base_dir);

// LoRA units: PEFT's initialisation, a PEFT adapter folder in, and out.
void init_lora_sharded(Fsdp& fsdp, Backend& be, uint64_t seed);
void load_adapter_sharded(const std::string& adapter_dir, Fsdp& fsdp, Backend& be);
void export_adapter_sharded(const std::string& dir, const std::string& base_model_path, Fsdp& fsdp, Backend& be);

}  // namespace llamaft
