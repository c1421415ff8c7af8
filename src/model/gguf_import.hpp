// A llama-architecture GGUF seen as a Hugging Face Llama: the config from the
// llama.* metadata, the tensor names (blk.N.attn_q.weight <->
// model.layers.N.self_attn.q_proj.weight) and the inverse of the q/k row
// permutation llama.cpp's convert_hf_to_gguf.py applies. Whatever does not
// map exactly (another architecture, an unknown llama.* key, RoPE scaling
// other than linear, per-layer head counts, a tensor with no HF name) is
// refused with a message naming it.
#pragma once

#include <string>

#include "io/gguf.hpp"
#include "model/llama_config.hpp"
#include "model/param_layout.hpp"

namespace llamaft {

LlamaConfig llama_config_from_gguf(const io::GgufFile& f);

// llama.cpp's name for an HF tensor name (model.layers.3.mlp.down_proj.weight
// -> blk.3.ffn_down.weight); GGUF export writes the same names.
std::string gguf_tensor_name(const std::string& hf_name);

// The GGUF tensor behind an HF tensor name; throws if it is missing or its
// shape differs from the slot's. Also checks, once, that every GGUF tensor
// is used (call check_gguf_tensors_used after mapping every slot).
const io::GgufTensorInfo& gguf_tensor_for(const io::GgufFile& f, const TensorSlot& slot);
void check_gguf_tensors_mapped(const io::GgufFile& f, const ParamLayout& layout);

// slot's values as fp32 in HF row order: dequantized, and for q_proj/k_proj
// with llama.cpp's per-head (2, hd/2) -> (hd/2, 2) row interleave undone.
void gguf_slot_values(const io::GgufFile& f, const LlamaConfig& cfg, const TensorSlot& slot, float* out);

}  // namespace llamaft
