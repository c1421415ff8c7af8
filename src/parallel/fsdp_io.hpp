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

// Fills every master shard from an HF model directory (validated against cfg).
void load_sharded(const std::string& model_dir, Fsdp& fsdp, Backend& be);

// Writes config.json + model.safetensors (the base units) into dir, collectively.
void export_sharded(const std::string& dir, const LlamaConfig& cfg, Fsdp& fsdp, Backend& be, bool bf16);

// LoRA units: PEFT's initialisation, a PEFT adapter folder in, and out.
void init_lora_sharded(Fsdp& fsdp, Backend& be, uint64_t seed);
void load_adapter_sharded(const std::string& adapter_dir, Fsdp& fsdp, Backend& be);
void export_adapter_sharded(const std::string& dir, const std::string& base_model_path, Fsdp& fsdp, Backend& be);

}  // namespace llamaft
