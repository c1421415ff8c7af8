// Flat units: a group of named tensors laid end to end in one buffer, each at
// a fixed element offset. This is the data type that FSDP shards and gathers,
// that quant/ compresses (UnitCodec) and that checkpoints and exports slice.
// It knows nothing of the architecture: model/param_layout.hpp decides which
// tensors go in which unit; quant/ and parallel/ see only this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llamaft {

struct TensorSlot {
  std::string hf_name;           // e.g. model.layers.3.self_attn.q_proj.weight
  std::vector<int64_t> shape;
  int64_t offset = 0;            // elements from the start of the unit
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

enum class UnitKind { kEmbedding, kBlock, kHead, kLora };

struct Unit {
  UnitKind kind;
  int layer = -1;                // block index for kBlock and kLora
  std::string name;              // "embed", "layers.3", "head", "lora.3"
  std::vector<TensorSlot> tensors;
  int64_t numel = 0;
  bool trainable = true;         // false: frozen base under LoRA (no grads, no optimizer state)
  const TensorSlot& slot(const std::string& suffix) const;  // by name suffix
};

}  // namespace llamaft
