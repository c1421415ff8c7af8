// How the model's parameters are grouped into flat buffers ("units"; the
// Unit and TensorSlot types live in unit/flat_unit.hpp). Each transformer
// block is one unit; so are the embeddings and the final norm (+ lm_head
// when untied). FSDP shards and gathers whole units; the model
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
#include "unit/flat_unit.hpp"  // TensorSlot, Unit, UnitKind

namespace llamaft {

// The seven linear layers LoRA can adapt, in the order their adapters sit
// in a LoRA unit.
enum LoraTarget { kQ, kK, kV, kO, kGate, kUp, kDown, kNumLoraTargets };
const char* lora_target_name(int target);  // "q_proj", ...

struct LoraSpec {
  int rank = 0;                  // 0: no LoRA (full fine-tuning)
  double alpha = 16;
  bool rslora = false;
  double dropout = 0;            // training only; kept for adapter_config.json
  bool targets[kNumLoraTargets] = {};
  float scale() const;           // alpha / r, or alpha / sqrt(r) with rslora
  bool enabled() const { return rank > 0; }
};

// Offsets (elements, within the layer's LoRA unit) of one target's A (r, in)
// and B (out, r), or -1 when the target is not adapted.
struct LoraOffsets {
  int64_t a = -1, b = -1;
  int64_t in = 0, out = 0;
};

// Offsets of the tensors in a block unit (elements).
struct BlockOffsets {
  int64_t input_norm, qkv, o, post_norm, gate_up, down;
};

class ParamLayout {
 public:
  explicit ParamLayout(const LlamaConfig& cfg, const LoraSpec& lora = {});
  const std::vector<Unit>& units() const { return units_; }
  int num_units() const { return static_cast<int>(units_.size()); }
  int embed_unit() const { return 0; }
  int block_unit(int layer) const { return 1 + layer; }
  int head_unit() const { return 1 + num_layers_; }
  bool has_lora() const { return lora_.enabled(); }
  int lora_unit(int layer) const { return 2 + num_layers_ + layer; }
  const LoraSpec& lora() const { return lora_; }
  const LoraOffsets& lora_offsets(int target) const { return lora_offsets_[target]; }
  const BlockOffsets& block_offsets() const { return block_offsets_; }
  int64_t total_numel() const;
  // Marks every unit frozen (forward-only use: FSDP then keeps no gradient or optimizer state).
  void freeze_all() {
    for (auto& u : units_) u.trainable = false;
  }
  // Locate a tensor by HF name: returns false if absent.
  bool find(const std::string& hf_name, int* unit, const TensorSlot** slot) const;

 private:
  std::vector<Unit> units_;
  BlockOffsets block_offsets_{};
  int num_layers_ = 0;
  LoraSpec lora_;
  LoraOffsets lora_offsets_[kNumLoraTargets];
};

}  // namespace llamaft
