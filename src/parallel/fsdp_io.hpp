// Sharded model I/O. Loading: each rank reads only the byte ranges of the HF
// safetensors that its shards cover, so no rank ever holds the whole model.
// Export: rank 0 writes the header, then every writing rank pwrite()s its
// shard's slices at precomputed offsets; the model is never gathered.
#pragma once

#include <string>

#include "model/llama_config.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// Fills every master shard from an HF model directory (validated against cfg).
void load_sharded(const std::string& model_dir, Fsdp& fsdp, Backend& be);

// Writes config.json + model.safetensors into dir, collectively over fsdp.world().
void export_sharded(const std::string& dir, const LlamaConfig& cfg, Fsdp& fsdp, Backend& be, bool bf16);

}  // namespace llamaft
