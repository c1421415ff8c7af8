// How the model's parameters are grouped into flat buffers ("units"). Each
// transformer block is one unit; so are the embeddings and the final norm
// (+ lm_head when untied). FSDP shards and gathers whole units; the model
// reads tensors out of a unit's flat buffer at fixed offsets.
//
// Block order inside a unit is chosen so that q,k,v are one contiguous
// (q_dim + 2 kv_dim, hidden) matrix and gate,up one (2 inter, hidden) matrix:
// the model runs each group as a single GEMM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/llama_config.hpp"

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

enum class UnitKind { kEmbedding, kBlock, kHead };

struct Unit {
  UnitKind kind;
  int layer = -1;                // block index for kBlock
  std::string name;              // "embed", "layers.3", "head"
  std::vector<TensorSlot> tensors;
  int64_t numel = 0;
  const TensorSlot& slot(const std::string& suffix) const;  // by name suffix
};

// Offsets of the tensors in a block unit (elements).
struct BlockOffsets {
  int64_t input_norm, qkv, o, post_norm, gate_up, down;
};

class ParamLayout {
 public:
  explicit ParamLayout(const LlamaConfig& cfg);
  const std::vector<Unit>& units() const { return units_; }
  int num_units() const { return static_cast<int>(units_.size()); }
  int embed_unit() const { return 0; }
  int block_unit(int layer) const { return 1 + layer; }
  int head_unit() const { return num_units() - 1; }
  const BlockOffsets& block_offsets() const { return block_offsets_; }
  int64_t total_numel() const;
  // Locate a tensor by HF name: returns false if absent.
  bool find(const std::string& hf_name, int* unit, const TensorSlot** slot) const;

 private:
  std::vector<Unit> units_;
  BlockOffsets block_offsets_{};
};

}  // namespace llamaft
