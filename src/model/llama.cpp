#include "model/llama.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/ignore_index.hpp"
#include "model/llama_compute.hpp"

namespace llamaft {

namespace detail {

template <typename S>
void LlamaCompute<S>::ensure_workspace(int rows) {
  if (rows <= rows_) return;
  rows_ = rows;
  const size_t d = cfg_.hidden_size, f = cfg_.intermediate_size;
  const size_t wide = std::max({d, 2 * f, static_cast<size_t>(cfg_.q_dim() + 2 * cfg_.kv_dim())});
  x_.resize(be_, rows * d);
  dx_.resize(be_, rows * d);
  tmp_.resize(be_, rows * wide * 2);
  head_norm_.resize(be_, rows * d);
  head_rstd_.resize(be_, rows);
  row_loss_.resize(be_, rows);
  if (layout_.has_lora()) {
    lora_t_.resize(be_, static_cast<size_t>(rows) * layout_.lora().rank);
    lora_dt_.resize(be_, static_cast<size_t>(rows) * layout_.lora().rank);
    if (opts_.lora_dropout > 0) {
      const size_t widest = std::max({d, f, static_cast<size_t>(cfg_.q_dim())});
      lora_x_.resize(be_, rows * widest);
      lora_dx_.resize(be_, rows * widest);
    }
  }
}
template <typename S>
const S* LlamaCompute<S>::lora_params(UnitAccess& access, int layer) {
  return layout_.has_lora() ? unit_params<S>(access, layout_.lora_unit(layer)) : nullptr;
}

template <typename S>
void LlamaCompute<S>::lora_forward(int layer, int target, const S* lw, const S* x, int ldx, int rows, S* y,
                              int ldy) {
  if (!lw) return;
  const LoraOffsets& o = layout_.lora_offsets(target);
  if (o.a < 0) return;
  const int r = layout_.lora().rank, in = static_cast<int>(o.in), out = static_cast<int>(o.out);
  if (dropout_keys_) {  // PEFT: lora_B(lora_A(dropout(x))), a fresh mask per adapter
    LLAMAFT_CHECK(ldx == in, "LoRA dropout needs a contiguous input");
    be_.dropout(x, lora_x_.data(), rows, in, dropout_seq_, dropout_keys_, dropout_salt(layer, target),
                opts_.lora_dropout);
    x = lora_x_.data();
  }
  // t(N, r) = x @ A^T ; y += scale * t @ B^T
  be_.gemm(false, true, rows, r, in, 1.f, x, ldx, lw + o.a, in, 0.f, lora_t_.data(), r);
  be_.gemm(false, true, rows, out, r, layout_.lora().scale(), lora_t_.data(), r, lw + o.b, r, 1.f, y, ldy);
}
template <typename S>
void LlamaCompute<S>::lora_backward(int layer, int target, const S* lw, float* dlw, const S* x, int ldx,
                               const S* dy, int ldy, int rows, S* dx) {
  if (!lw) return;
  const LoraOffsets& o = layout_.lora_offsets(target);
  if (o.a < 0) return;
  const int r = layout_.lora().rank, in = static_cast<int>(o.in), out = static_cast<int>(o.out);
  const float scale = layout_.lora().scale();
  S* t = lora_t_.data();
  S* dt = lora_dt_.data();
  if (dropout_keys_) {
    // The same mask again (it is a function of its keys), on the input and on
    // the input gradient.
    LLAMAFT_CHECK(ldx == in, "LoRA dropout needs a contiguous input");
    const uint64_t salt = dropout_salt(layer, target);
    be_.dropout(x, lora_x_.data(), rows, in, dropout_seq_, dropout_keys_, salt, opts_.lora_dropout);
    const S* xd = lora_x_.data();
    be_.gemm(false, true, rows, r, in, 1.f, xd, in, lw + o.a, in, 0.f, t, r);
    be_.gemm(true, false, out, r, rows, scale, dy, ldy, t, r, 1.f, dlw + o.b, r);
    be_.gemm(false, false, rows, r, out, scale, dy, ldy, lw + o.b, r, 0.f, dt, r);
    be_.gemm(true, false, r, in, rows, 1.f, dt, r, xd, in, 1.f, dlw + o.a, in);
    be_.gemm(false, false, rows, in, r, 1.f, dt, r, lw + o.a, in, 0.f, lora_dx_.data(), in);
    be_.dropout(lora_dx_.data(), lora_dx_.data(), rows, in, dropout_seq_, dropout_keys_, salt, opts_.lora_dropout);
    be_.axpy(1.f, lora_dx_.data(), dx, static_cast<size_t>(rows) * in);
    return;
  }
  be_.gemm(false, true, rows, r, in, 1.f, x, ldx, lw + o.a, in, 0.f, t, r);              // t = x A^T
  be_.gemm(true, false, out, r, rows, scale, dy, ldy, t, r, 1.f, dlw + o.b, r);           // dB += s dy^T t
  be_.gemm(false, false, rows, r, out, scale, dy, ldy, lw + o.b, r, 0.f, dt, r);          // dt = s dy B
  be_.gemm(true, false, r, in, rows, 1.f, dt, r, x, ldx, 1.f, dlw + o.a, in);             // dA += dt^T x
  be_.gemm(false, false, rows, in, r, 1.f, dt, r, lw + o.a, in, 1.f, dx, ldx);            // dx += dt A
}
template <typename S>
const S* LlamaCompute<S>::lm_head_weight(UnitAccess& access) {
  if (cfg_.tie_word_embeddings) return unit_params<S>(access, layout_.embed_unit());
  const auto& head = layout_.units()[layout_.head_unit()];
  return unit_params<S>(access, layout_.head_unit()) + head.slot("lm_head.weight").offset;
}
template <typename S>
float* LlamaCompute<S>::lm_head_grad(UnitAccess& access) {
  if (cfg_.tie_word_embeddings) return access.grads(layout_.embed_unit());
  const auto& head = layout_.units()[layout_.head_unit()];
  return access.grads(layout_.head_unit()) + head.slot("lm_head.weight").offset;
}
template <typename S>
void LlamaCompute<S>::embed_forward(const Batch& b, UnitAccess& access, S* x) {
  const int rows = b.batch * b.seq;
  const S* table = unit_params<S>(access, layout_.embed_unit());
  access.prefetch(layout_.num_units() > 2 ? layout_.block_unit(0) : layout_.head_unit());
  be_.embedding_fwd(b.ids, table, x, rows, static_cast<int>(cfg_.hidden_size));
  access.release(layout_.embed_unit());  // a tied head gathers it again
}
template <typename S>
void LlamaCompute<S>::block_forward(int layer, const S* w, const S* lw, int batch, int seq,
                               const int32_t* positions, const int32_t* doc_start, S* x,
                               BlockActs& a, KvLayer* cache, int q_offset) {
  const auto& off = layout_.block_offsets();
  const auto [rows, d, f, qd, kvd, hd, ldqkv] = block_dims(batch * seq);
  const float eps = static_cast<float>(cfg_.rms_norm_eps);

  be_.copy(a.x_in.data(), x, sizeof(S) * rows * d);
  be_.rmsnorm_fwd(x, w + off.input_norm, a.h1.data(), a.rstd1.data(), rows, d, eps);
  // qkv(N, qd+2kvd) = h1 @ [Wq; Wk; Wv]^T
  be_.gemm(false, true, rows, ldqkv, d, 1.f, a.h1.data(), d, w + off.qkv, d, 0.f, a.qkv.data(), ldqkv);
  S* q = a.qkv.data();
  S* k = q + qd;
  S* v = k + kvd;
  lora_forward(layer, kQ, lw, a.h1.data(), d, rows, q, ldqkv);  // adapters act before RoPE, as in PEFT
  lora_forward(layer, kK, lw, a.h1.data(), d, rows, k, ldqkv);
  lora_forward(layer, kV, lw, a.h1.data(), d, rows, v, ldqkv);
  be_.rope(q, ldqkv, positions, inv_freq_.data(), rows, static_cast<int>(cfg_.num_attention_heads), hd, false);
  be_.rope(k, ldqkv, positions, inv_freq_.data(), rows, static_cast<int>(cfg_.num_key_value_heads), hd, false);

  AttnShape s;
  s.batch = batch;
  s.tq = seq;
  s.n_heads = static_cast<int>(cfg_.num_attention_heads);
  s.n_kv_heads = static_cast<int>(cfg_.num_key_value_heads);
  s.head_dim = hd;
  s.scale = 1.f / std::sqrt(static_cast<float>(hd));
  s.ldq = ldqkv;
  s.ldo = qd;
  s.doc_start = doc_start;
  const S* kk = k;
  const S* vv = v;
  if (cache) {
    LLAMAFT_CHECK(batch == 1, "KV-cache decoding supports batch 1");
    for (int t = 0; t < seq; ++t) {
      be_.copy(cache->k.data() + static_cast<size_t>(q_offset + t) * kvd, k + static_cast<size_t>(t) * ldqkv,
               sizeof(S) * kvd);
      be_.copy(cache->v.data() + static_cast<size_t>(q_offset + t) * kvd, v + static_cast<size_t>(t) * ldqkv,
               sizeof(S) * kvd);
    }
    kk = cache->k.data();
    vv = cache->v.data();
    s.tk = q_offset + seq;
    s.q_offset = q_offset;
    s.ldk = s.ldv = kvd;
  } else {
    s.tk = seq;
    s.ldk = s.ldv = ldqkv;
  }
  be_.attention_fwd(s, q, kk, vv, a.att.data(), a.lse.data());
  // x += att @ Wo^T
  be_.gemm(false, true, rows, d, qd, 1.f, a.att.data(), qd, w + off.o, qd, 1.f, x, d);
  lora_forward(layer, kO, lw, a.att.data(), qd, rows, x, d);

  be_.copy(a.x_mid.data(), x, sizeof(S) * rows * d);
  be_.rmsnorm_fwd(x, w + off.post_norm, a.h2.data(), a.rstd2.data(), rows, d, eps);
  // gu(N, 2F) = h2 @ [Wgate; Wup]^T
  be_.gemm(false, true, rows, 2 * f, d, 1.f, a.h2.data(), d, w + off.gate_up, d, 0.f, a.gu.data(), 2 * f);
  lora_forward(layer, kGate, lw, a.h2.data(), d, rows, a.gu.data(), 2 * f);
  lora_forward(layer, kUp, lw, a.h2.data(), d, rows, a.gu.data() + f, 2 * f);
  be_.swiglu_fwd(a.gu.data(), a.gu.data() + f, 2 * f, a.act.data(), rows, f);
  // x += act @ Wdown^T
  be_.gemm(false, true, rows, d, f, 1.f, a.act.data(), f, w + off.down, f, 1.f, x, d);
  lora_forward(layer, kDown, lw, a.act.data(), f, rows, x, d);
}
template <typename S>
void LlamaCompute<S>::block_backward(int layer, const S* w, const S* lw, float* dw, float* dlw, int batch, int seq,
                                const int32_t* positions, const int32_t* doc_start, BlockActs& a,
                                S* dx) {
  const auto& off = layout_.block_offsets();
  const auto [rows, d, f, qd, kvd, hd, ldqkv] = block_dims(batch * seq);
  const int hq = static_cast<int>(cfg_.num_attention_heads), hkv = static_cast<int>(cfg_.num_key_value_heads);

  S* big = tmp_.data();                                      // (N, max(2F, ldqkv))
  S* small = tmp_.data() + tmp_.size() / 2;                  // (N, max(D, F, qd))

  // ---- MLP: x_out = x_mid + act @ Wd^T -------------------------------------------
  // dWd(D, F) += dx^T @ act   (only when the base trains)
  if (dw) be_.gemm(true, false, d, f, rows, 1.f, dx, d, a.act.data(), f, 1.f, dw + off.down, f);
  // dact(N, F) = dx @ Wd
  be_.gemm(false, false, rows, f, d, 1.f, dx, d, w + off.down, f, 0.f, small, f);
  lora_backward(layer, kDown, lw, dlw, a.act.data(), f, dx, d, rows, small);
  // dgu(N, 2F)
  be_.swiglu_bwd(small, a.gu.data(), a.gu.data() + f, 2 * f, big, big + f, 2 * f, rows, f);
  // dWgu(2F, D) += dgu^T @ h2
  if (dw) be_.gemm(true, false, 2 * f, d, rows, 1.f, big, 2 * f, a.h2.data(), d, 1.f, dw + off.gate_up, d);
  // dh2(N, D) = dgu @ Wgu
  be_.gemm(false, false, rows, d, 2 * f, 1.f, big, 2 * f, w + off.gate_up, d, 0.f, small, d);
  lora_backward(layer, kGate, lw, dlw, a.h2.data(), d, big, 2 * f, rows, small);
  lora_backward(layer, kUp, lw, dlw, a.h2.data(), d, big + f, 2 * f, rows, small);
  // dx += rmsnorm_bwd(dh2)
  be_.rmsnorm_bwd(small, a.x_mid.data(), w + off.post_norm, a.rstd2.data(), big, dw ? dw + off.post_norm : nullptr,
                  rows, d);
  be_.axpy(1.f, big, dx, static_cast<size_t>(rows) * d);

  // ---- attention: x_mid = x_in + att @ Wo^T ------------------------------------------
  // dWo(D, qd) += dx^T @ att
  if (dw) be_.gemm(true, false, d, qd, rows, 1.f, dx, d, a.att.data(), qd, 1.f, dw + off.o, qd);
  // datt(N, qd) = dx @ Wo
  be_.gemm(false, false, rows, qd, d, 1.f, dx, d, w + off.o, qd, 0.f, small, qd);
  lora_backward(layer, kO, lw, dlw, a.att.data(), qd, dx, d, rows, small);
  AttnShape s;
  s.batch = batch;
  s.tq = s.tk = seq;
  s.n_heads = hq;
  s.n_kv_heads = hkv;
  s.head_dim = hd;
  s.scale = 1.f / std::sqrt(static_cast<float>(hd));
  s.ldq = s.ldk = s.ldv = ldqkv;
  s.ldo = qd;
  s.doc_start = doc_start;
  const S* q = a.qkv.data();
  S* dqkv = big;  // (N, ldqkv)
  be_.attention_bwd(s, q, q + qd, q + qd + kvd, a.att.data(), a.lse.data(), small, dqkv, dqkv + qd,
                    dqkv + qd + kvd);
  be_.rope(dqkv, ldqkv, positions, inv_freq_.data(), rows, hq, hd, true);
  be_.rope(dqkv + qd, ldqkv, positions, inv_freq_.data(), rows, hkv, hd, true);
  // dWqkv(ldqkv, D) += dqkv^T @ h1
  if (dw) be_.gemm(true, false, ldqkv, d, rows, 1.f, dqkv, ldqkv, a.h1.data(), d, 1.f, dw + off.qkv, d);
  // dh1(N, D) = dqkv @ Wqkv
  be_.gemm(false, false, rows, d, ldqkv, 1.f, dqkv, ldqkv, w + off.qkv, d, 0.f, small, d);
  lora_backward(layer, kQ, lw, dlw, a.h1.data(), d, dqkv, ldqkv, rows, small);
  lora_backward(layer, kK, lw, dlw, a.h1.data(), d, dqkv + qd, ldqkv, rows, small);
  lora_backward(layer, kV, lw, dlw, a.h1.data(), d, dqkv + qd + kvd, ldqkv, rows, small);
  be_.rmsnorm_bwd(small, a.x_in.data(), w + off.input_norm, a.rstd1.data(), big, dw ? dw + off.input_norm : nullptr,
                  rows, d);
  be_.axpy(1.f, big, dx, static_cast<size_t>(rows) * d);
}
template <typename S>
int64_t LlamaCompute<S>::count_targets(const Batch& b, bool read_back, std::vector<int32_t>& host_targets) {
  if (b.target_tokens >= 0 && !read_back) return b.target_tokens;  // counted on the host when the batch was made
  const int rows = b.batch * b.seq;
  host_targets.resize(rows);
  be_.to_host(host_targets.data(), b.targets, sizeof(int32_t) * rows);
  int64_t tokens = 0;
  for (int t : host_targets) tokens += (t != kIgnoreIndex);
  return tokens;
}
template <typename S>
void LlamaCompute<S>::chunk_token_logprobs(const std::vector<int32_t>& host_targets, int r0, int n, int vocab,
                                           TokenLogprobs token, std::vector<S>& host_logits) {
  // Only the rows with a target are read back (a task's continuations are a few of them).
  host_logits.resize(vocab);
  for (int r = 0; r < n; ++r) {
    const int tgt = host_targets[r0 + r];
    token.logprob[r0 + r] = 0;
    token.greedy[r0 + r] = 0;
    if (tgt == kIgnoreIndex) continue;
    be_.to_host(host_logits.data(), logits_.data() + static_cast<size_t>(r) * vocab, vocab * sizeof(S));
    const TokenLogprob t = token_logprob(host_logits.data(), vocab, tgt);
    token.logprob[r0 + r] = t.logprob;
    token.greedy[r0 + r] = t.greedy;
  }
}
template <typename S>
int64_t LlamaCompute<S>::chunk_correct(const std::vector<int32_t>& host_targets, int r0, int n, int vocab,
                                       std::vector<S>& host_logits) {
  host_logits.resize(static_cast<size_t>(n) * vocab);
  be_.to_host(host_logits.data(), logits_.data(), host_logits.size() * sizeof(S));
  int64_t correct = 0;
  for (int r = 0; r < n; ++r) {
    const int tgt = host_targets[r0 + r];
    if (tgt == kIgnoreIndex) continue;
    const S* row = host_logits.data() + static_cast<size_t>(r) * vocab;
    const auto less = [](S p, S q) { return static_cast<float>(p) < static_cast<float>(q); };
    correct += (std::max_element(row, row + vocab, less) - row) == tgt;
  }
  return correct;
}
template <typename S>
LossSum LlamaCompute<S>::head(HeadMode mode, const Batch& b, UnitAccess& access, S* x,
                         float loss_scale, float* logits_out, bool count_correct, TokenLogprobs token) {
  const int rows = b.batch * b.seq;
  const int d = static_cast<int>(cfg_.hidden_size), vocab = static_cast<int>(cfg_.vocab_size);
  const int hu = layout_.head_unit();
  const auto& head_unit = layout_.units()[hu];
  const S* hw = unit_params<S>(access, hu);
  const S* norm_w = hw + head_unit.slot("model.norm.weight").offset;
  const S* wlm = lm_head_weight(access);
  be_.rmsnorm_fwd(x, norm_w, head_norm_.data(), head_rstd_.data(), rows, d,
                  static_cast<float>(cfg_.rms_norm_eps));

  LossSum result;
  if (mode == HeadMode::kLogits) {
    // logits(N, V) = hN @ Wlm^T
    be_.gemm(false, true, rows, vocab, d, 1.f, head_norm_.data(), d, wlm, d, 0.f, logits_out, vocab);
    return result;
  }
  // Chunked over rows so no (N, V) logits buffer is ever alive, in chunks of
  // head_chunk_bytes (kHeadChunkBytes): thousands of rows at a 128K vocabulary, so each pass
  // over the (V, D) head weight and its gradient serves many rows.
  const int chunk = head_chunk_rows(rows, vocab, sizeof(S), opts_.head_chunk_bytes);
  logits_.resize(be_, static_cast<size_t>(chunk) * vocab);
  std::vector<int32_t> host_targets;
  result.tokens = count_targets(b, count_correct || token.logprob, host_targets);
  S* dnorm = dx_.data();  // (N, D) gradient wrt head_norm output
  const bool base_trains = !layout_.has_lora();
  float* dwlm = mode == HeadMode::kLossBackward && base_trains ? lm_head_grad(access) : nullptr;
  std::vector<float> host_loss(chunk);
  std::vector<S> host_logits;
  for (int r0 = 0; r0 < rows; r0 += chunk) {
    const int n = std::min(chunk, rows - r0);
    const S* hn = head_norm_.data() + static_cast<size_t>(r0) * d;
    be_.gemm(false, true, n, vocab, d, 1.f, hn, d, wlm, d, 0.f, logits_.data(), vocab);
    if (token.logprob) {
      chunk_token_logprobs(host_targets, r0, n, vocab, token, host_logits);
    } else if (count_correct) {
      result.correct += chunk_correct(host_targets, r0, n, vocab, host_logits);
    }
    be_.cross_entropy_rows(logits_.data(), b.targets + r0, row_loss_.data() + r0, n, vocab, loss_scale);
    if (mode == HeadMode::kLossBackward) {
      // dWlm(V, D) += dlogits^T @ hN ; dhN(n, D) = dlogits @ Wlm
      if (dwlm) be_.gemm(true, false, vocab, d, n, 1.f, logits_.data(), vocab, hn, d, 1.f, dwlm, d);
      be_.gemm(false, false, n, d, vocab, 1.f, logits_.data(), vocab, wlm, d, 0.f,
               dnorm + static_cast<size_t>(r0) * d, d);
    }
  }
  // One read-back per micro-batch: every chunk's per-row losses, summed on the device.
  result.loss_sum = be_.sum(row_loss_.data(), rows);
  if (mode == HeadMode::kLossBackward) {
    float* dnorm_w = base_trains ? access.grads(hu) + head_unit.slot("model.norm.weight").offset : nullptr;
    // dx(N, D) = rmsnorm_bwd(dhN)
    be_.rmsnorm_bwd(dnorm, x, norm_w, head_rstd_.data(), tmp_.data(), dnorm_w, rows, d);
    be_.copy(dx_.data(), tmp_.data(), sizeof(S) * rows * d);
  }
  return result;
}
template <typename S>
void LlamaCompute<S>::size_activations(const Batch& b, bool recompute) {
  const int rows = b.batch * b.seq;
  const int layers = static_cast<int>(cfg_.num_hidden_layers);
  const size_t d = cfg_.hidden_size;
  if (recompute) {
    block_inputs_.resize(layers);
    if (!scratch_) scratch_ = std::make_unique<BlockActs>();
    scratch_->resize(be_, cfg_, rows, b.batch, b.seq);
    for (auto& bi : block_inputs_) bi.resize(be_, rows * d);
  } else {
    acts_.resize(layers);
    for (auto& a : acts_) {
      if (!a) a = std::make_unique<BlockActs>();
      a->resize(be_, cfg_, rows, b.batch, b.seq);
    }
  }
}
template <typename S>
void LlamaCompute<S>::forward_blocks(const Batch& b, UnitAccess& access, S* x, bool recompute) {
  const int rows = b.batch * b.seq;
  const int layers = static_cast<int>(cfg_.num_hidden_layers);
  const size_t d = cfg_.hidden_size;
  activation_bytes_ = 0;
  for (int l = 0; l < layers; ++l) {
    const int u = layout_.block_unit(l);
    if (recompute) {
      be_.copy(block_inputs_[l].data(), x, sizeof(S) * rows * d);
      activation_bytes_ += block_inputs_[l].bytes();
    }
    BlockActs& a = recompute ? *scratch_ : *acts_[l];
    const S* w = unit_params<S>(access, u);
    prefetch_next(access, l, layers);
    const S* lw = lora_params(access, l);
    block_forward(l, w, lw, b.batch, b.seq, b.positions, b.doc_start, x, a, nullptr, 0);
    if (!recompute) activation_bytes_ += a.bytes();
    access.release(u);
    if (lw) access.release(layout_.lora_unit(l));
  }
  if (recompute) activation_bytes_ += scratch_->bytes();
}
template <typename S>
void LlamaCompute<S>::backward_blocks(const Batch& b, UnitAccess& access, bool recompute) {
  const int rows = b.batch * b.seq;
  const int layers = static_cast<int>(cfg_.num_hidden_layers);
  const size_t d = cfg_.hidden_size;
  const bool base_trains = !layout_.has_lora();
  S* dx = dx_.data();
  for (int l = layers - 1; l >= 0; --l) {
    const int u = layout_.block_unit(l);
    const S* w = unit_params<S>(access, u);
    if (l > 0) access.prefetch(layout_.block_unit(l - 1));
    BlockActs* a = recompute ? scratch_.get() : acts_[l].get();
    const S* lw = lora_params(access, l);
    if (recompute) {
      // Re-run the block from its saved input to rebuild every activation.
      S* xr = head_norm_.data();
      be_.copy(xr, block_inputs_[l].data(), sizeof(S) * rows * d);
      block_forward(l, w, lw, b.batch, b.seq, b.positions, b.doc_start, xr, *a, nullptr, 0);
    }
    float* dlw = lw ? access.grads(layout_.lora_unit(l)) : nullptr;
    block_backward(l, w, lw, base_trains ? access.grads(u) : nullptr, dlw, b.batch, b.seq, b.positions, b.doc_start,
                   *a, dx);
    access.release(u);
    if (base_trains) access.grads_done(u);
    if (lw) {
      access.release(layout_.lora_unit(l));
      access.grads_done(layout_.lora_unit(l));
    }
  }
}
template <typename S>
LossSum LlamaCompute<S>::forward_backward(const Batch& b, UnitAccess& access, float loss_scale) {
  const int rows = b.batch * b.seq;
  const int layers = static_cast<int>(cfg_.num_hidden_layers);
  const size_t d = cfg_.hidden_size;
  ensure_workspace(rows);
  // LoRA dropout for this call only (an exception leaves it set, but every
  // call sets it again first).
  dropout_keys_ = opts_.lora_dropout > 0 && layout_.has_lora() ? b.dropout_keys : nullptr;
  dropout_seq_ = b.seq;
  const bool recompute = opts_.activation_checkpointing;
  size_activations(b, recompute);

  S* x = x_.data();
  embed_forward(b, access, x);
  forward_blocks(b, access, x, recompute);

  if (layers > 0) access.prefetch(layout_.block_unit(layers - 1));  // first unit of backward
  LossSum loss = head(HeadMode::kLossBackward, b, access, x, loss_scale, nullptr, false);
  access.release(layout_.head_unit());
  const bool base_trains = !layout_.has_lora();
  if (base_trains) access.grads_done(layout_.head_unit());
  // A tied head's gradient stays in the embedding's buffer until the
  // embedding backward has added its share: one reduce-scatter, not two.
  if (cfg_.tie_word_embeddings) access.release(layout_.embed_unit());

  backward_blocks(b, access, recompute);
  if (base_trains) {  // a frozen embedding needs no backward at all
    const int eu = layout_.embed_unit();
    be_.embedding_bwd(b.ids, dx_.data(), access.grads(eu), rows, static_cast<int>(d));
    access.grads_done(eu);
  }
  dropout_keys_ = nullptr;
  return loss;
}

// Embedding and every block without keeping activations: the shared part of
// forward_loss and forward_logits. Returns the final residual stream.
template <typename S>
S* LlamaCompute<S>::forward_trunk(const Batch& b, UnitAccess& access) {
  const int rows = b.batch * b.seq;
  ensure_workspace(rows);
  if (!scratch_) scratch_ = std::make_unique<BlockActs>();
  scratch_->resize(be_, cfg_, rows, b.batch, b.seq);
  S* x = x_.data();
  embed_forward(b, access, x);
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    const int u = layout_.block_unit(l);
    const S* w = unit_params<S>(access, u);
    prefetch_next(access, l, static_cast<int>(cfg_.num_hidden_layers));
    const S* lw = lora_params(access, l);
    block_forward(l, w, lw, b.batch, b.seq, b.positions, b.doc_start, x, *scratch_, nullptr, 0);
    access.release(u);
    if (lw) access.release(layout_.lora_unit(l));
  }
  return x;
}
template <typename S>
LossSum LlamaCompute<S>::forward_loss(const Batch& b, UnitAccess& access, bool count_correct) {
  S* x = forward_trunk(b, access);
  LossSum loss = head(HeadMode::kLoss, b, access, x, 1.f, nullptr, count_correct);
  access.release(layout_.head_unit());
  if (cfg_.tie_word_embeddings) access.release(layout_.embed_unit());
  return loss;
}
template <typename S>
void LlamaCompute<S>::forward_token_logprobs(const Batch& b, UnitAccess& access, TokenLogprobs out) {
  S* x = forward_trunk(b, access);
  head(HeadMode::kLoss, b, access, x, 1.f, nullptr, false, out);
  access.release(layout_.head_unit());
  if (cfg_.tie_word_embeddings) access.release(layout_.embed_unit());
}
template <typename S>
void LlamaCompute<S>::forward_logits(const Batch& b, UnitAccess& access, float* out) {
  S* x = forward_trunk(b, access);
  head(HeadMode::kLogits, b, access, x, 1.f, out, false);
  access.release(layout_.head_unit());
  if (cfg_.tie_word_embeddings) access.release(layout_.embed_unit());
}
template <typename S>
void LlamaCompute<S>::reset_cache(int max_tokens) {
  LLAMAFT_REQUIRE(max_tokens > 0, "decode length must be positive");
  cache_.resize(cfg_.num_hidden_layers);
  for (auto& c : cache_) {
    if (!c) c = std::make_unique<KvLayer>();
    c->k.resize(be_, static_cast<size_t>(max_tokens) * cfg_.kv_dim());
    c->v.resize(be_, static_cast<size_t>(max_tokens) * cfg_.kv_dim());
  }
  cache_len_ = 0;
  cache_cap_ = max_tokens;
}
template <typename S>
std::vector<float> LlamaCompute<S>::decode(const int32_t* host_ids, int n, UnitAccess& access) {
  LLAMAFT_REQUIRE(n > 0, "decode needs at least one token");
  LLAMAFT_REQUIRE(cache_len_ + n <= cache_cap_, "KV cache full: ", cache_len_, " + ", n,
                  " tokens exceed the ", cache_cap_, " reserved");
  ensure_workspace(n);
  if (!scratch_) scratch_ = std::make_unique<BlockActs>();
  scratch_->resize(be_, cfg_, n, 1, n);
  std::vector<int32_t> pos(n);
  for (int i = 0; i < n; ++i) pos[i] = cache_len_ + i;
  DeviceArray<int32_t> ids_d(be_, n), pos_d(be_, n);
  be_.to_device(ids_d.data(), host_ids, sizeof(int32_t) * n);
  be_.to_device(pos_d.data(), pos.data(), sizeof(int32_t) * n);
  Batch b;
  b.batch = 1;
  b.seq = n;
  b.ids = ids_d.data();
  b.positions = pos_d.data();
  S* x = x_.data();
  embed_forward(b, access, x);
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    const int u = layout_.block_unit(l);
    const S* w = unit_params<S>(access, u);
    const S* lw = lora_params(access, l);
    block_forward(l, w, lw, 1, n, b.positions, nullptr, x, *scratch_, cache_[l].get(), cache_len_);
    access.release(u);
    if (lw) access.release(layout_.lora_unit(l));
  }
  // Only the last position's logits are needed.
  const size_t d = cfg_.hidden_size;
  Batch last = b;
  last.seq = 1;
  const S* x_last = x + (n - 1) * d;
  DeviceArray<float> logits(be_, cfg_.vocab_size);
  head(HeadMode::kLogits, last, access, const_cast<S*>(x_last), 1.f, logits.data(), false);
  access.release(layout_.head_unit());
  if (cfg_.tie_word_embeddings) access.release(layout_.embed_unit());
  cache_len_ += n;
  std::vector<float> host(cfg_.vocab_size);
  be_.to_host(host.data(), logits.data(), host.size() * sizeof(S));
  return host;
}

}  // namespace detail

LlamaModel::LlamaModel(const LlamaConfig& cfg, Backend& be, ModelOptions opts)
    : cfg_(cfg), be_(be), opts_(opts), layout_(cfg, opts.lora) {
  cfg_.validate("model config");
  if (opts_.bf16_storage) {
    LLAMAFT_REQUIRE(be_.has_bf16_storage(), "the ", be_.name(),
                    " backend computes in fp32 only; bf16 activations need the cpu or cuda backend");
    compute_ = std::make_unique<detail::LlamaCompute<bf16>>(cfg_, be_, opts_, layout_);
  } else {
    compute_ = std::make_unique<detail::LlamaCompute<float>>(cfg_, be_, opts_, layout_);
  }
}

LlamaModel::~LlamaModel() = default;

LossSum LlamaModel::forward_backward(const Batch& b, UnitAccess& access, float loss_scale) {
  return compute_->forward_backward(b, access, loss_scale);
}
LossSum LlamaModel::forward_loss(const Batch& b, UnitAccess& access, bool count_correct) {
  return compute_->forward_loss(b, access, count_correct);
}
void LlamaModel::forward_token_logprobs(const Batch& b, UnitAccess& access, TokenLogprobs out) {
  compute_->forward_token_logprobs(b, access, out);
}
void LlamaModel::forward_logits(const Batch& b, UnitAccess& access, float* out) {
  compute_->forward_logits(b, access, out);
}
void LlamaModel::reset_cache(int max_tokens) { compute_->reset_cache(max_tokens); }
std::vector<float> LlamaModel::decode(const int32_t* host_ids, int n, UnitAccess& access) {
  return compute_->decode(host_ids, n, access);
}
int LlamaModel::cache_len() const { return compute_->cache_len(); }
size_t LlamaModel::activation_bytes() const { return compute_->activation_bytes(); }

}  // namespace llamaft
