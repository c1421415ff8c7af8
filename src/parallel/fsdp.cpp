#include "parallel/fsdp.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace llamaft {

ShardStrategy parse_strategy(const std::string& name) {
  if (name == "full_shard") return ShardStrategy::kFullShard;
  if (name == "shard_grad_op") return ShardStrategy::kShardGradOp;
  if (name == "no_shard") return ShardStrategy::kNoShard;
  if (name == "hybrid_shard") return ShardStrategy::kHybridShard;
  LLAMAFT_FAIL("unknown fsdp.strategy '", name, "' (full_shard|shard_grad_op|no_shard|hybrid_shard)");
}

const char* strategy_name(ShardStrategy s) {
  switch (s) {
    case ShardStrategy::kFullShard: return "full_shard";
    case ShardStrategy::kShardGradOp: return "shard_grad_op";
    case ShardStrategy::kNoShard: return "no_shard";
    case ShardStrategy::kHybridShard: return "hybrid_shard";
  }
  return "?";
}

MeshShape mesh_for(ShardStrategy s, int world_size, int world_rank, int shard_group_size) {
  MeshShape m;
  switch (s) {
    case ShardStrategy::kFullShard:
    case ShardStrategy::kShardGradOp:
      m.shard_size = world_size;
      break;
    case ShardStrategy::kNoShard:
      m.shard_size = 1;
      break;
    case ShardStrategy::kHybridShard: {
      const int g = shard_group_size > 0 ? shard_group_size : world_size;
      LLAMAFT_REQUIRE(world_size % g == 0, "fsdp.shard_group_size = ", g, " does not divide the ", world_size,
                      " ranks; use a divisor of ", world_size, " (usually the ranks per node)");
      m.shard_size = g;
      break;
    }
  }
  m.replica_size = world_size / m.shard_size;
  m.shard_index = world_rank % m.shard_size;
  m.replica_index = world_rank / m.shard_size;
  return m;
}

struct Fsdp::Gathered {
  float* buffer = nullptr;   // gathered shards (null for a quantized unit held whole on this rank)
  RequestPtr request;        // null once complete
  float* dequant = nullptr;  // quantized units: the dequantized fp32 unit
  float* packed = nullptr;   // bf16 params: this rank's shard as bf16 words (until the gather completes)
  float* words = nullptr;    // bf16 params: every shard as bf16 words
  float* half = nullptr;     // params_bf16: the whole unit in bf16
};

struct Fsdp::PendingReduce {
  int unit = -1;
  float* full = nullptr;   // (padded) gradient contribution, returned to the pool (null once packed to bf16)
  float* shard = nullptr;  // (shard_size) reduced shard
  float* half_full = nullptr;   // bf16_reduce: full rounded to bf16 ((padded + 1) / 2 words)
  float* half_shard = nullptr;  // bf16_reduce: the reduced shard in bf16 ((shard_size + 1) / 2 words)
  RequestPtr request;
};

Fsdp::Fsdp(const ParamLayout& layout, Backend& be, Communicator& world, const FsdpOptions& options)
    : layout_(layout),
      be_(be),
      world_(world),
      strategy_(options.strategy),
      base_quant_(options.base_quant),
      bf16_params_(options.bf16_params),
      bf16_reduce_(options.bf16_reduce) {
  const quant::Kind base_quant = options.base_quant;
  mesh_ = mesh_for(options.strategy, world.size(), world.rank(), options.shard_group_size);
  // Collective: every rank makes both splits in the same order.
  shard_comm_ = world.split(mesh_.replica_index, mesh_.shard_index);
  replica_comm_ = world.split(mesh_.shard_index, mesh_.replica_index);
  LLAMAFT_CHECK(shard_comm_->size() == mesh_.shard_size && replica_comm_->size() == mesh_.replica_size,
                "mesh split mismatch");
  const int s = mesh_.shard_size;
  for (const auto& u : layout.units()) {
    ShardGeometry g;
    if (base_quant != quant::Kind::kNone && u.kind == UnitKind::kBlock && !u.trainable) {
      // One codec (and one item table) for every block of the same layout.
      std::shared_ptr<const quant::UnitCodec> shared;
      for (const auto& c : codec_)
        if (c && c->serves(u)) shared = c;
      codec_.push_back(shared ? shared : std::make_shared<const quant::UnitCodec>(u, base_quant, s));
      g.numel = g.padded = codec_.back()->shard_words() * s;
    } else {
      codec_.emplace_back();
      g.numel = u.numel;
      g.padded = (u.numel + s - 1) / s * s;
    }
    g.shard_size = g.padded / s;
    g.begin = static_cast<int64_t>(mesh_.shard_index) * g.shard_size;
    geom_.push_back(g);
    // Frozen units (the base under LoRA) keep only their weights.
    const size_t train_size = u.trainable ? static_cast<size_t>(g.shard_size) : 0;
    master_.emplace_back(be, g.shard_size);
    grad_.emplace_back(be, train_size);
    m_.emplace_back(be, train_size);
    v_.emplace_back(be, train_size);
    be.fill(master_.back().data(), 0.f, g.shard_size);
    for (auto* a : {&grad_.back(), &m_.back(), &v_.back()})
      if (train_size) be.fill(a->data(), 0.f, train_size);
  }
}

Fsdp::~Fsdp() {
  // In-flight requests complete in their destructors before buffers go.
  pending_.clear();
  gathered_.clear();
}

float* Fsdp::take_buffer(int64_t n) {
  auto best = free_buffers_.end();
  for (auto it = free_buffers_.begin(); it != free_buffers_.end(); ++it)
    if (it->first >= n && (best == free_buffers_.end() || it->first < best->first)) best = it;
  std::unique_ptr<DeviceArray<float>> buf;
  if (best != free_buffers_.end()) {
    buf = std::move(best->second);
    free_buffers_.erase(best);
  } else {
    // Idle buffers too small for this request would sit under it: give them
    // back first (the CUDA arena coalesces neighbours), so the pool never
    // holds memory beside a larger buffer (bf16 gathers vs fp32 gradients).
    for (size_t i = free_buffers_.size(); i-- > 0;)
      if (free_buffers_[i].first < n) free_buffers_.erase(free_buffers_.begin() + static_cast<std::ptrdiff_t>(i));
    buf = std::make_unique<DeviceArray<float>>(be_, static_cast<size_t>(n));
  }
  float* p = buf->data();
  buffer_bytes_ += buf->bytes();
  peak_buffer_bytes_ = std::max(peak_buffer_bytes_, buffer_bytes_);
  used_buffers_[p] = std::move(buf);
  return p;
}

void Fsdp::give_buffer(float* p) {
  auto it = used_buffers_.find(p);
  LLAMAFT_CHECK(it != used_buffers_.end(), "returning an unknown buffer");
  buffer_bytes_ -= it->second->bytes();
  const int64_t cap = static_cast<int64_t>(it->second->size());
  free_buffers_.emplace_back(cap, std::move(it->second));
  used_buffers_.erase(it);
}

Fsdp::Gathered& Fsdp::start_gather(int unit) {
  auto g = std::make_unique<Gathered>();
  const ShardGeometry& geo = geom_[unit];
  if (bf16_params_ && !codec_[unit]) {
    const int64_t words = (geo.shard_size + 1) / 2;
    g->packed = take_buffer(words);
    be_.pack_bf16(master_[unit].data(), g->packed, static_cast<size_t>(geo.shard_size));
    if (mesh_.shard_size > 1) {
      g->words = take_buffer(words * mesh_.shard_size);
      g->request = shard_comm_->all_gather(g->packed, g->words, static_cast<size_t>(words));
    } else {
      g->words = g->packed;
      g->packed = nullptr;
    }
  } else if (mesh_.shard_size > 1) {
    g->buffer = take_buffer(geo.padded);
    g->request = shard_comm_->all_gather(master_[unit].data(), g->buffer, geo.shard_size);
  }
  auto& ref = *g;
  gathered_[unit] = std::move(g);
  return ref;
}

Fsdp::Gathered& Fsdp::completed_gather(int unit) {
  auto it = gathered_.find(unit);
  Gathered& g = it != gathered_.end() ? *it->second : start_gather(unit);
  if (g.request) {
    g.request->wait();
    g.request.reset();
  }
  return g;
}

const float* Fsdp::params(int unit) {
  const quant::UnitCodec* codec = codec_[unit].get();
  if (!gathers(unit)) return master_[unit].data();
  Gathered& g = completed_gather(unit);
  if (g.words) {  // bf16 params: widen every shard into the fp32 unit, then drop the words
    const ShardGeometry& geo = geom_[unit];
    g.buffer = take_buffer(geo.padded);
    be_.unpack_bf16(g.words, static_cast<size_t>((geo.shard_size + 1) / 2), g.buffer,
                    static_cast<size_t>(geo.shard_size), mesh_.shard_size);
    give_buffer(g.words);
    g.words = nullptr;
    if (g.packed) give_buffer(g.packed);
    g.packed = nullptr;
  }
  if (!codec) return g.buffer;
  if (!g.dequant) {
    // Right before the unit's GEMMs: the quantized words become fp32 weights
    // for this unit only, and the gathered words go back to the pool.
    g.dequant = take_buffer(codec->numel());
    be_.dequantize_unit(*codec, g.buffer ? g.buffer : master_[unit].data(), g.dequant);
    if (g.buffer) give_buffer(g.buffer);
    g.buffer = nullptr;
  }
  return g.dequant;
}

const bf16* Fsdp::params_bf16(int unit) {
  LLAMAFT_CHECK(bf16_params_, "bf16 parameters need train.param_dtype = bf16");
  const quant::UnitCodec* codec = codec_[unit].get();
  Gathered& g = completed_gather(unit);
  if (!g.half) {
    const ShardGeometry& geo = geom_[unit];
    if (codec) {
      g.half = take_buffer((codec->numel() + 1) / 2);
      be_.dequantize_unit(*codec, g.buffer ? g.buffer : master_[unit].data(), reinterpret_cast<bf16*>(g.half));
      if (g.buffer) give_buffer(g.buffer);
      g.buffer = nullptr;
    } else if (!g.words) {
      LLAMAFT_FAIL("unit ", unit, " was already widened to fp32 by params(); release it before params_bf16()");
    } else if (geo.shard_size % 2 == 0 || mesh_.shard_size == 1) {
      g.half = g.words;  // shard after shard with no padding word between: already the unit
      g.words = nullptr;
    } else {
      g.half = take_buffer((geo.padded + 1) / 2);
      be_.unpack_bf16(g.words, static_cast<size_t>((geo.shard_size + 1) / 2), reinterpret_cast<bf16*>(g.half),
                      static_cast<size_t>(geo.shard_size), mesh_.shard_size);
      give_buffer(g.words);
      g.words = nullptr;
    }
    if (g.packed) give_buffer(g.packed);
    g.packed = nullptr;
  }
  return reinterpret_cast<const bf16*>(g.half);
}

void Fsdp::prefetch(int unit) {
  if (mesh_.shard_size == 1 || !gathers(unit) || gathered_.count(unit)) return;
  start_gather(unit);
}

void Fsdp::drop(Gathered& g) {
  if (g.request) g.request->wait();
  for (float* p : {g.buffer, g.dequant, g.packed, g.words, g.half})
    if (p) give_buffer(p);
}

void Fsdp::release(int unit) {
  if (!gathers(unit)) return;
  // ZeRO-2 keeps what forward gathered until backward has used it.
  if (strategy_ == ShardStrategy::kShardGradOp && !in_backward_)
    return;
  auto it = gathered_.find(unit);
  if (it == gathered_.end()) return;
  drop(*it->second);
  gathered_.erase(it);
}

float* Fsdp::grads(int unit) {
  LLAMAFT_CHECK(layout_.units()[unit].trainable, "gradient requested for frozen unit ", layout_.units()[unit].name);
  in_backward_ = true;
  if (mesh_.shard_size == 1) {
    // This rank holds the whole unit: the model accumulates straight into the
    // gradient shard (no full-size buffer to zero, reduce and add back).
    replicas_pending_ |= mesh_.replica_size > 1;  // all-reduced once per step: sync_replicas()
    return grad_[unit].data();
  }
  auto it = grad_full_.find(unit);
  if (it != grad_full_.end()) return it->second;
  const ShardGeometry& geo = geom_[unit];
  float* buf = take_buffer(geo.padded);
  be_.fill(buf, 0.f, geo.padded);
  grad_full_[unit] = buf;
  return buf;
}

void Fsdp::finish_reduce(PendingReduce& p) {
  const ShardGeometry& geo = geom_[p.unit];
  if (p.request) {
    p.request->wait();
    p.request.reset();
  }
  replicas_pending_ |= mesh_.replica_size > 1;  // all-reduced once per step: sync_replicas()
  if (p.half_shard) {  // widen the bf16 sum into fp32 first
    be_.unpack_bf16(p.half_shard, static_cast<size_t>((geo.shard_size + 1) / 2), p.shard,
                    static_cast<size_t>(geo.shard_size), 1);
    give_buffer(p.half_shard);
    give_buffer(p.half_full);
  }
  be_.axpy(1.f, p.shard, grad_[p.unit].data(), geo.shard_size);
  give_buffer(p.shard);
  if (p.full) give_buffer(p.full);
}

void Fsdp::grads_done(int unit) {
  auto it = grad_full_.find(unit);
  if (it == grad_full_.end()) return;
  auto p = std::make_unique<PendingReduce>();
  p->unit = unit;
  p->full = it->second;
  grad_full_.erase(it);
  const ShardGeometry& geo = geom_[unit];
  // Only a unit split over several ranks has a full-size buffer (grads()).
  if (bf16_reduce_) {
    // Round the full gradient to bf16 and give its fp32 buffer back before the
    // reduction runs: only the bf16 words stay alive while it is in flight.
    p->half_full = take_buffer((geo.padded + 1) / 2);
    be_.pack_bf16(p->full, p->half_full, static_cast<size_t>(geo.padded));
    give_buffer(p->full);
    p->full = nullptr;
    p->half_shard = take_buffer((geo.shard_size + 1) / 2);
    p->shard = take_buffer(geo.shard_size);
    p->request = shard_comm_->reduce_scatter_sum_bf16(reinterpret_cast<const uint16_t*>(p->half_full),
                                                      reinterpret_cast<uint16_t*>(p->half_shard),
                                                      static_cast<size_t>(geo.shard_size));
  } else {
    p->shard = take_buffer(geo.shard_size);
    p->request = shard_comm_->reduce_scatter_sum(p->full, p->shard, geo.shard_size);
  }
  // Keep one reduction in flight behind the compute; finish older ones.
  while (!pending_.empty()) {
    finish_reduce(*pending_.front());
    pending_.erase(pending_.begin());
  }
  pending_.push_back(std::move(p));
}

void Fsdp::wait_gradients() {
  for (auto& p : pending_) finish_reduce(*p);
  pending_.clear();
}

void Fsdp::sync_replicas() {
  wait_gradients();
  if (!replicas_pending_) return;
  for (int u = 0; u < num_units(); ++u)
    if (trainable(u)) replica_comm_->all_reduce_sum(grad_[u].data(), static_cast<size_t>(geom_[u].shard_size));
  replicas_pending_ = false;
}

void Fsdp::end_backward() {
  wait_gradients();
  for (auto& [unit, g] : gathered_) drop(*g);
  gathered_.clear();
  in_backward_ = false;
}

void Fsdp::zero_grad_shards() {
  replicas_pending_ = false;
  for (int u = 0; u < num_units(); ++u)
    if (trainable(u)) be_.fill(grad_[u].data(), 0.f, geom_[u].shard_size);
}

size_t Fsdp::param_bytes() const {
  size_t b = 0;
  for (const auto& a : master_) b += a.bytes();
  return b;
}
size_t Fsdp::grad_bytes() const {
  size_t b = 0;
  for (const auto& a : grad_) b += a.bytes();
  return b;
}
size_t Fsdp::optimizer_bytes() const {
  size_t b = 0;
  for (size_t i = 0; i < m_.size(); ++i) b += m_[i].bytes() + v_[i].bytes();
  return b;
}

CommStats Fsdp::comm_totals() const {
  CommStats t;
  for (const Communicator* c : {shard_comm_.get(), replica_comm_.get(), &world_}) {
    const CommStats& s = const_cast<Communicator*>(c)->stats();
    t.all_gather_bytes += s.all_gather_bytes;
    t.reduce_scatter_bytes += s.reduce_scatter_bytes;
    t.all_reduce_bytes += s.all_reduce_bytes;
    t.calls += s.calls;
    t.wait_seconds += s.wait_seconds;
  }
  return t;
}

}  // namespace llamaft
