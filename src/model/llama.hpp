// The Llama model, written once against Backend. Forward and backward are
// explicit per op (no autograd tape). Parameters are reached through
// UnitAccess, so the same code runs with every parameter resident (one
// process) or with FSDP gathering each unit just before use.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
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
  // The same in bf16, for a model with bf16 storage (ModelOptions::bf16_storage);
  // a source that holds fp32 only keeps this default, which throws.
  virtual const bf16* params_bf16(int unit);
  virtual void prefetch(int unit) {}            // hint: params(unit) is needed next
  virtual void release(int unit) {}             // done with params(unit) for now
  // Full-size gradient buffer, only ever accumulated into: it need not be
  // zero (at one rank it is the gradient shard itself, holding the earlier
  // micro-batches' sums).
  virtual float* grads(int unit) = 0;
  // The gradient written so far into grads(unit) is complete (a tied head's
  // share stays in the embedding's buffer until the embedding backward).
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
  int64_t target_tokens = -1;  // targets that are not -100, counted on the host; -1: unknown (read back)
};

// Rows of logits per chunk of the loss head: as many as fit in
// kHeadChunkBytes of logits (at least one, at most `rows`).
constexpr size_t kHeadChunkBytes = size_t(256) << 20;
inline int head_chunk_rows(int rows, int vocab, size_t elem_bytes, size_t budget = kHeadChunkBytes) {
  const size_t fit = budget / (static_cast<size_t>(vocab) * elem_bytes);
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(rows), fit)));
}

struct ModelOptions {
  bool activation_checkpointing = false;  // recompute each block in backward
  LoraSpec lora;                          // rank 0: full fine-tuning; else the base is frozen
  float lora_dropout = 0;                 // PEFT's lora_dropout on each adapter's input (training only)
  // bf16 activations and gathered weights (torch FSDP MixedPrecision with
  // param_dtype = bf16; the CUDA backend under train.param_dtype = bf16):
  // the backend's bf16 ops, parameters from UnitAccess::params_bf16, fp32
  // statistics, losses and gradients. Needs Backend::has_bf16_storage().
  bool bf16_storage = false;
  // Logits per chunk of the loss head (tests make it small to get many chunks).
  size_t head_chunk_bytes = kHeadChunkBytes;
};

struct LossSum {
  double loss_sum = 0;   // sum of per-token NLL
  int64_t tokens = 0;    // non-ignored targets
  int64_t correct = 0;   // argmax == target (when requested)
};

// Per-position outputs of LlamaModel::forward_token_logprobs, host memory, B*T each.
struct TokenLogprobs {
  double* logprob = nullptr;  // log softmax(logits)[target]
  uint8_t* greedy = nullptr;  // 1: the target is the first argmax (torch.argmax's choice on ties)
};

struct TokenLogprob {
  double logprob = 0;
  bool greedy = false;
};
// log softmax(logits)[target] from one row of logits, in double:
// (x_t - max) - log(sum_i exp(x_i - max)). The differences of two fp32 values
// are exact in double, so a confident token (x_t the max) keeps its small
// log-probability to full relative precision, as torch's log_softmax does in
// fp32; lse - x_t rounded to fp32 would carry an absolute error of
// ulp(lse) ~ 2e-6 (1e-4 relative at p = 0.99).
template <typename S>
TokenLogprob token_logprob(const S* logits, int vocab, int target) {
  float mx = -INFINITY;
  int arg = 0;
  for (int i = 0; i < vocab; ++i) {
    const float v = static_cast<float>(logits[i]);
    if (v > mx) mx = v, arg = i;
  }
  double se = 0;
  for (int i = 0; i < vocab; ++i) se += std::exp(static_cast<double>(static_cast<float>(logits[i])) - mx);
  TokenLogprob t;
  t.logprob = (static_cast<double>(static_cast<float>(logits[target])) - mx) - std::log(se);
  t.greedy = arg == target;
  return t;
}

namespace detail {
class LlamaComputeBase;  // the model's computation in one storage type: LlamaCompute<float> or <bf16> (llama_compute.hpp)
}

class LlamaModel {
 public:
  LlamaModel(const LlamaConfig& cfg, Backend& be, ModelOptions opts = {});
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;  // the computation refers to this object's config and layout
  LlamaModel& operator=(const LlamaModel&) = delete;
  const LlamaConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() { return be_; }
  bool bf16_storage() const { return opts_.bf16_storage; }

  // Forward and backward over one micro-batch. Gradients of
  // loss_scale * sum(token NLL) accumulate into access.grads(). `tokens`
  // (the targets that are not kIgnoreIndex) is b.target_tokens, or counted
  // from a host copy of b.targets when that is unknown.
  LossSum forward_backward(const Batch& b, UnitAccess& access, float loss_scale);

  // Forward only: per-token NLL sum and count (and accuracy when asked).
  LossSum forward_loss(const Batch& b, UnitAccess& access, bool count_correct = false);

  // Forward only, per position (host memory): each target's log-probability
  // and greedy flag (token_logprob above; 0 where the target is ignored).
  // lm-evaluation-harness tasks (train/task_eval).
  void forward_token_logprobs(const Batch& b, UnitAccess& access, TokenLogprobs out);

  // Forward only: fp32 logits for every position, (B*T, V), into out (backend memory).
  void forward_logits(const Batch& b, UnitAccess& access, float* out);

  // Incremental decoding with a KV cache (batch size 1).
  void reset_cache(int max_tokens);
  // Feeds `n` tokens at positions cache_len.., returns the logits of the last
  // one in host memory (V floats).
  std::vector<float> decode(const int32_t* host_ids, int n, UnitAccess& access);
  int cache_len() const;

  // Bytes of activations kept for backward at the last forward_backward.
  size_t activation_bytes() const;

 private:
  LlamaConfig cfg_;
  Backend& be_;
  ModelOptions opts_;
  ParamLayout layout_;
  std::unique_ptr<detail::LlamaComputeBase> compute_;
};

// Everything resident in one buffer per unit: single-process eval, generate,
// and the reference dumps. Gradient buffers are allocated on first use.
class ResidentParams : public UnitAccess {
 public:
  ResidentParams(Backend& be, const ParamLayout& layout);
  const float* params(int unit) override { return params_[unit].data(); }
  float* mutable_params(int unit) { return params_[unit].data(); }
  // bf16 copies of every unit (rounded to nearest even), for a bf16-storage
  // model; params_bf16 refuses until they exist. Call once the fp32 values are final.
  void round_copies_to_bf16();
  const bf16* params_bf16(int unit) override;
  float* grads(int unit) override;
  void zero_grads();
  const float* grad_data(int unit) const { return grads_[unit].data(); }
  int num_units() const { return static_cast<int>(params_.size()); }
  int64_t unit_numel(int unit) const { return static_cast<int64_t>(params_[unit].size()); }

 private:
  Backend& be_;
  std::vector<DeviceArray<float>> params_, grads_;
  std::vector<DeviceArray<bf16>> half_;
};

}  // namespace llamaft
