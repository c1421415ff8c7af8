// The Llama model, written once against Backend. Forward and backward are
// explicit per op (no autograd tape). Parameters are reached through
// UnitAccess, so the same code runs with every parameter resident (one
// process) or with FSDP gathering each unit just before use.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "model/llama_config.hpp"
#include "model/param_layout.hpp"

namespace llamaft {

// Where the model gets a unit's (gathered) parameters and puts its gradients.
// Calls come in execution order: forward embed, blocks 0..L-1, head; backward
// head, blocks L-1..0, embed. Tied embeddings: the head also reads and writes
// the embed unit.
class UnitAccess {
 public:
  virtual ~UnitAccess() = default;
  virtual const float* params(int unit) = 0;   // full unit params, valid until release
  virtual void prefetch(int unit) {}            // hint: params(unit) is needed next
  virtual void release(int unit) {}             // done with params(unit) for now
  virtual float* grads(int unit) = 0;           // full-size gradient buffer (accumulated into)
  // The gradient written so far into grads(unit) is complete; a later
  // grads(unit) call may hand out a fresh zeroed buffer (tied embeddings
  // contribute twice: at the head and at the embedding).
  virtual void grads_done(int unit) {}
};

// One micro-batch in backend memory. targets[t] is the token that position t
// must predict (already shifted), or -100 when ignored.
struct Batch {
  int batch = 0, seq = 0;
  const int32_t* ids = nullptr;        // (B*T)
  const int32_t* positions = nullptr;  // (B*T)
  const int32_t* targets = nullptr;    // (B*T)
  const int32_t* doc_start = nullptr;  // (B*T) row-relative start of each token's document, or null
  const uint64_t* dropout_keys = nullptr;  // (B) host: one key per sequence for LoRA dropout; null: no dropout
};

struct ModelOptions {
  bool activation_checkpointing = false;  // recompute each block in backward
  LoraSpec lora;                          // rank 0: full fine-tuning; else the base is frozen
  float lora_dropout = 0;                 // PEFT's lora_dropout on each adapter's input (training only)
};

struct LossSum {
  double loss_sum = 0;   // sum of per-token NLL
  int64_t tokens = 0;    // non-ignored targets
  int64_t correct = 0;   // argmax == target (when requested)
};

class LlamaModel {
 public:
  LlamaModel(const LlamaConfig& cfg, Backend& be, ModelOptions opts = {});
  ~LlamaModel();
  const LlamaConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() { return be_; }

  // Forward and backward over one micro-batch. Gradients of
  // loss_scale * sum(token NLL) accumulate into access.grads(). `tokens` is
  // counted on the host from the targets passed in host_targets.
  LossSum forward_backward(const Batch& b, UnitAccess& access, float loss_scale);

  // Forward only: per-token NLL sum and count (and accuracy when asked).
  LossSum forward_loss(const Batch& b, UnitAccess& access, bool count_correct = false);

  // Forward only: logits for every position, (B*T, V), into out (backend memory).
  void forward_logits(const Batch& b, UnitAccess& access, float* out);

  // Incremental decoding with a KV cache (batch size 1).
  void reset_cache(int max_tokens);
  // Feeds `n` tokens at positions cache_len.., returns the logits of the last
  // one in host memory (V floats).
  std::vector<float> decode(const int32_t* host_ids, int n, UnitAccess& access);
  int cache_len() const { return cache_len_; }

  // Bytes of activations kept for backward at the last forward_backward.
  size_t activation_bytes() const { return activation_bytes_; }

 private:
  struct BlockActs;
  struct KvLayer;
  enum class HeadMode { kLossBackward, kLoss, kLogits };

  void ensure_workspace(int rows);
  void embed_forward(const Batch& b, UnitAccess& access, float* x);
  // w: the block's base weights; lw: its LoRA unit (null without LoRA).
  void block_forward(int layer, const float* w, const float* lw, int batch, int seq, const int32_t* positions,
                     const int32_t* doc_start, float* x, BlockActs& a, KvLayer* cache,
                     int q_offset);
  // dw: base weight gradients (null when the base is frozen); dlw: LoRA gradients.
  void block_backward(int layer, const float* w, const float* lw, float* dw, float* dlw, int batch, int seq,
                      const int32_t* positions, const int32_t* doc_start, BlockActs& a, float* dx);
  // y(rows, out) += scale * (x A^T) B^T for one adapted target.
  void lora_forward(int layer, int target, const float* lw, const float* x, int ldx, int rows, float* y, int ldy);
  // Gradients of lora_forward: dA, dB accumulate; dx += the input gradient.
  void lora_backward(int layer, int target, const float* lw, float* dlw, const float* x, int ldx, const float* dy, int ldy,
                     int rows, float* dx);
  const float* lora_params(UnitAccess& access, int layer);
  float* forward_trunk(const Batch& b, UnitAccess& access);
  LossSum head(HeadMode mode, const Batch& b, UnitAccess& access, float* x, float loss_scale,
               float* logits_out, bool count_correct);
  const float* lm_head_weight(UnitAccess& access);
  float* lm_head_grad(UnitAccess& access);

  LlamaConfig cfg_;
  Backend& be_;
  ModelOptions opts_;
  ParamLayout layout_;
  DeviceArray<float> inv_freq_;  // (head_dim/2)
  int rows_ = 0;                 // B*T the workspace is sized for
  std::vector<std::unique_ptr<BlockActs>> acts_;  // per layer (or one scratch)
  std::unique_ptr<BlockActs> scratch_;
  std::vector<DeviceArray<float>> block_inputs_;  // per layer x_in when recomputing
  DeviceArray<float> x_, dx_, tmp_, head_norm_, head_rstd_, logits_, row_loss_, lora_t_, lora_dt_, lora_x_, lora_dx_;
  // LoRA dropout of the running forward_backward (null outside training).
  const uint64_t* dropout_keys_ = nullptr;
  int dropout_seq_ = 0;
  std::vector<std::unique_ptr<KvLayer>> cache_;
  int cache_len_ = 0, cache_cap_ = 0;
  size_t activation_bytes_ = 0;
};

// Everything resident in one buffer per unit: single-process eval, generate,
// and the reference dumps. Gradient buffers are allocated on first use.
class ResidentParams : public UnitAccess {
 public:
  ResidentParams(Backend& be, const ParamLayout& layout);
  const float* params(int unit) override { return params_[unit].data(); }
  float* mutable_params(int unit) { return params_[unit].data(); }
  float* grads(int unit) override;
  void zero_grads();
  const float* grad_data(int unit) const { return grads_[unit].data(); }
  int num_units() const { return static_cast<int>(params_.size()); }
  int64_t unit_numel(int unit) const { return static_cast<int64_t>(params_[unit].size()); }

 private:
  Backend& be_;
  std::vector<DeviceArray<float>> params_, grads_;
};

}  // namespace llamaft
