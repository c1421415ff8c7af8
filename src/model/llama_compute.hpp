// The model's computation in one storage type, declared for model/llama.cpp,
// which defines every member and is the only file that includes this: the
// class and the activations it keeps, apart from the code that runs them.
#pragma once

#include <memory>
#include <vector>

#include "backend/device_array.hpp"
#include "model/llama.hpp"

namespace llamaft {
namespace detail {

// The model's computation in one storage type S of activations and gathered
// weights: float (every backend) or bf16 (a backend with bf16 storage).
// Statistics (rstd, lse), per-row losses and all gradients are fp32.
class LlamaComputeBase {
 public:
  virtual ~LlamaComputeBase() = default;
  virtual LossSum forward_backward(const Batch& b, UnitAccess& access, float loss_scale) = 0;
  virtual LossSum forward_loss(const Batch& b, UnitAccess& access, bool count_correct) = 0;
  virtual void forward_token_logprobs(const Batch& b, UnitAccess& access, TokenLogprobs out) = 0;
  virtual void forward_logits(const Batch& b, UnitAccess& access, float* out) = 0;
  virtual void reset_cache(int max_tokens) = 0;
  virtual std::vector<float> decode(const int32_t* host_ids, int n, UnitAccess& access) = 0;
  int cache_len() const { return cache_len_; }
  size_t activation_bytes() const { return activation_bytes_; }

 protected:
  int cache_len_ = 0, cache_cap_ = 0;
  size_t activation_bytes_ = 0;
};

template <typename S>
const S* unit_params(UnitAccess& access, int unit);
template <>
inline const float* unit_params<float>(UnitAccess& access, int unit) {
  return access.params(unit);
}
template <>
inline const bf16* unit_params<bf16>(UnitAccess& access, int unit) {
  return access.params_bf16(unit);
}

inline uint64_t dropout_salt(int layer, int target) { return static_cast<uint64_t>(layer) * kNumLoraTargets + target + 1; }

template <typename S>
class LlamaCompute final : public detail::LlamaComputeBase {
 public:
  LlamaCompute(const LlamaConfig& cfg, Backend& be, const ModelOptions& opts, const ParamLayout& layout)
      : cfg_(cfg), be_(be), opts_(opts), layout_(layout) {
    const auto inv = cfg_.rope_inv_freq();
    inv_freq_.resize(be_, inv.size());
    be_.to_device(inv_freq_.data(), inv.data(), inv.size() * sizeof(float));
  }
  LossSum forward_backward(const Batch& b, UnitAccess& access, float loss_scale) override;
  LossSum forward_loss(const Batch& b, UnitAccess& access, bool count_correct) override;
  void forward_token_logprobs(const Batch& b, UnitAccess& access, TokenLogprobs out) override;
  void forward_logits(const Batch& b, UnitAccess& access, float* out) override;
  void reset_cache(int max_tokens) override;
  std::vector<float> decode(const int32_t* host_ids, int n, UnitAccess& access) override;

 private:
  struct BlockActs;
  struct KvLayer;
  enum class HeadMode { kLossBackward, kLoss, kLogits };

  // A block's sizes: rows = B*T, d, f (ffn), qd and kvd (query and key/value
  // widths), hd (head dim), ldqkv = qd + 2 kvd (the fused QKV row).
  struct BlockDims {
    int rows, d, f, qd, kvd, hd, ldqkv;
  };
  BlockDims block_dims(int rows) const {
    const int qd = static_cast<int>(cfg_.q_dim()), kvd = static_cast<int>(cfg_.kv_dim());
    return {rows, static_cast<int>(cfg_.hidden_size), static_cast<int>(cfg_.intermediate_size), qd, kvd,
            static_cast<int>(cfg_.head_dim), qd + 2 * kvd};
  }
  void ensure_workspace(int rows);
  void embed_forward(const Batch& b, UnitAccess& access, S* x);
  // w: the block's base weights; lw: its LoRA unit (null without LoRA).
  void block_forward(int layer, const S* w, const S* lw, int batch, int seq, const int32_t* positions,
                     const int32_t* doc_start, S* x, BlockActs& a, KvLayer* cache, int q_offset);
  // dw: base weight gradients (null when the base is frozen); dlw: LoRA gradients.
  void block_backward(int layer, const S* w, const S* lw, float* dw, float* dlw, int batch, int seq,
                      const int32_t* positions, const int32_t* doc_start, BlockActs& a, S* dx);
  // y(rows, out) += scale * (x A^T) B^T for one adapted target.
  void lora_forward(int layer, int target, const S* lw, const S* x, int ldx, int rows, S* y, int ldy);
  // Gradients of lora_forward: dA, dB accumulate; dx += the input gradient.
  void lora_backward(int layer, int target, const S* lw, float* dlw, const S* x, int ldx, const S* dy, int ldy,
                     int rows, S* dx);
  const S* lora_params(UnitAccess& access, int layer);
  // forward_backward's steps: the activations kept for backward (every
  // block's, or one scratch and each block's input when recomputing), the
  // blocks' forward from the embedding's output x, and their backward from dx_.
  void size_activations(const Batch& b, bool recompute);
  void forward_blocks(const Batch& b, UnitAccess& access, S* x, bool recompute);
  void backward_blocks(const Batch& b, UnitAccess& access, bool recompute);
  S* forward_trunk(const Batch& b, UnitAccess& access);
  // token (kLoss): each target row's log-probability and greedy flag, on the host.
  LossSum head(HeadMode mode, const Batch& b, UnitAccess& access, S* x, float loss_scale, float* logits_out,
               bool count_correct, TokenLogprobs token = {});
  // The head's targets that are not kIgnoreIndex: b.target_tokens, or counted
  // in host_targets (read back when read_back or the batch has no count).
  int64_t count_targets(const Batch& b, bool read_back, std::vector<int32_t>& host_targets);
  // From the n rows of logits_ (rows r0.. of the batch), before the loss
  // overwrites them: each target row's log-probability and greedy flag, or
  // the rows whose argmax is their target.
  void chunk_token_logprobs(const std::vector<int32_t>& host_targets, int r0, int n, int vocab, TokenLogprobs token,
                            std::vector<S>& host_logits);
  int64_t chunk_correct(const std::vector<int32_t>& host_targets, int r0, int n, int vocab,
                        std::vector<S>& host_logits);
  const S* lm_head_weight(UnitAccess& access);
  float* lm_head_grad(UnitAccess& access);
  // After block l: the next block, or the head (and a tied head's weight,
  // which lives in the embedding unit) after the last one.
  void prefetch_next(UnitAccess& access, int l, int layers) {
    if (l + 1 < layers) return access.prefetch(layout_.block_unit(l + 1));
    access.prefetch(layout_.head_unit());
    if (cfg_.tie_word_embeddings) access.prefetch(layout_.embed_unit());
  }

  const LlamaConfig& cfg_;
  Backend& be_;
  const ModelOptions& opts_;
  const ParamLayout& layout_;
  DeviceArray<float> inv_freq_;  // (head_dim/2)
  int rows_ = 0;                 // B*T the workspace is sized for
  std::vector<std::unique_ptr<BlockActs>> acts_;  // per layer (or one scratch)
  std::unique_ptr<BlockActs> scratch_;
  std::vector<DeviceArray<S>> block_inputs_;  // per layer x_in when recomputing
  DeviceArray<S> x_, dx_, tmp_, head_norm_, logits_, lora_t_, lora_dt_, lora_x_, lora_dx_;
  DeviceArray<float> head_rstd_, row_loss_;
  // LoRA dropout of the running forward_backward (null outside training).
  const uint64_t* dropout_keys_ = nullptr;
  int dropout_seq_ = 0;
  std::vector<std::unique_ptr<KvLayer>> cache_;
};

// Activations one block keeps for its backward pass. N = B*T rows.
template <typename S>
struct LlamaCompute<S>::BlockActs {
  DeviceArray<S> x_in;   // (N, D)  block input (residual stream)
  DeviceArray<float> rstd1;  // (N)
  DeviceArray<S> h1;     // (N, D)  input_layernorm output
  DeviceArray<S> qkv;    // (N, qd + 2 kvd) after RoPE on q and k
  DeviceArray<S> att;    // (N, qd) attention output before o_proj
  DeviceArray<float> lse;    // (B, Hq, T)
  DeviceArray<S> x_mid;  // (N, D)  residual after attention
  DeviceArray<float> rstd2;  // (N)
  DeviceArray<S> h2;     // (N, D)
  DeviceArray<S> gu;     // (N, 2F) gate | up
  DeviceArray<S> act;    // (N, F)  silu(gate) * up

  void resize(Backend& be, const LlamaConfig& c, int rows, int batch, int seq) {
    const size_t n = rows, d = c.hidden_size, f = c.intermediate_size;
    x_in.resize(be, n * d);
    rstd1.resize(be, n);
    h1.resize(be, n * d);
    qkv.resize(be, n * (c.q_dim() + 2 * c.kv_dim()));
    att.resize(be, n * c.q_dim());
    lse.resize(be, static_cast<size_t>(batch) * c.num_attention_heads * seq);
    x_mid.resize(be, n * d);
    rstd2.resize(be, n);
    h2.resize(be, n * d);
    gu.resize(be, n * 2 * f);
    act.resize(be, n * f);
  }
  size_t bytes() const {
    return x_in.bytes() + rstd1.bytes() + h1.bytes() + qkv.bytes() + att.bytes() + lse.bytes() +
           x_mid.bytes() + rstd2.bytes() + h2.bytes() + gu.bytes() + act.bytes();
  }
};

template <typename S>
struct LlamaCompute<S>::KvLayer {
  DeviceArray<S> k, v;  // (max_tokens, kvd)
};

}  // namespace detail
}  // namespace llamaft
