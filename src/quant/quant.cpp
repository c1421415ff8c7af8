#include "quant/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace llamaft::quant {

Kind parse_kind(const std::string& name) {
  if (name == "none") return Kind::kNone;
  if (name == "int8") return Kind::kInt8;
  if (name == "nf4") return Kind::kNf4;
  if (name == "bf16") return Kind::kBf16;
  if (name == "nf4-nodq") return Kind::kNf4Plain;
  LLAMAFT_FAIL("unknown quantization '", name, "' (none|int8|nf4|nf4-nodq|bf16)");
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNone: return "none";
    case Kind::kInt8: return "int8";
    case Kind::kNf4: return "nf4";
    case Kind::kBf16: return "bf16";
    case Kind::kNf4Plain: return "nf4-nodq";
  }
  return "?";
}

bool is_quantized_slot(const TensorSlot& s) {
  const std::string suffix = "_proj.weight";
  return s.shape.size() == 2 && s.hf_name.size() > suffix.size() &&
         s.hf_name.compare(s.hf_name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

namespace {

// torch.linspace(0.1, 1, n) in float32 as PyTorch's x86 CPU kernel computes
// it (bitsandbytes builds its map on the CPU): step = (end - start) / (n - 1);
// the scalar path is a fused multiply-add from the nearer end; the AVX2 path
// fills 8 lanes as base + step * lane from a scalar-path base, two vectors
// at a time, and the remainder takes the scalar path. This file is compiled
// with -ffp-contract=off so that only the explicit fmaf()s are fused.
std::vector<float> torch_linspace(int n) {
  const float start = 0.1f, end = 1.0f;
  const float step = (end - start) / static_cast<float>(n - 1);
  const int halfway = n / 2;
  auto scalar = [&](int idx) {
    return idx < halfway ? std::fmaf(step, static_cast<float>(idx), start)
                         : std::fmaf(-step, static_cast<float>(n - idx - 1), end);
  };
  std::vector<float> out;
  int idx = 0;
  constexpr int kLanes = 8;
  for (; idx + 2 * kLanes <= n;) {
    for (int v = 0; v < 2; ++v, idx += kLanes) {
      const float base = scalar(idx);
      for (int lane = 0; lane < kLanes; ++lane) {
        const float inc = step * static_cast<float>(lane);
        out.push_back(base + inc);
      }
    }
  }
  for (; idx < n; ++idx) out.push_back(scalar(idx));
  return out;
}

std::vector<float> make_dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
  // for exponent i, 2^i + 1 linspace boundaries in [0.1, 1], their means
  // scaled by 10^(i - 6), with both signs; then 0 and 1; sorted.
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const std::vector<float> b = torch_linspace((1 << i) + 1);
    const float scale = static_cast<float>(std::pow(10.0, i - 6));
    for (size_t j = 0; j + 1 < b.size(); ++j) {
      const float mean = (b[j] + b[j + 1]) / 2.0f;
      data.push_back(scale * mean);
      data.push_back(-scale * mean);
    }
  }
  data.push_back(0.f);
  data.push_back(1.f);
  LLAMAFT_CHECK(data.size() == 256, "dynamic map has ", data.size(), " entries");
  std::sort(data.begin(), data.end());
  return data;
}

float block_absmax(const float* x, int64_t n) {
  // On the bit patterns with the sign cleared: for non-negative floats
  // (infinity included) unsigned order is float order, and the integer max
  // vectorises where the float one (NaN-ordered) does not. A NaN weight gives
  // a NaN absmax, as in bitsandbytes (the float max here used to skip it).
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    m = std::max(m, b & 0x7fffffffu);
  }
  float f;
  std::memcpy(&f, &m, 4);
  return f;
}

// absmax[b] of every block of 64 in x(n) (the last block may be partial).
std::vector<float> block_absmaxes(const float* x, int64_t n) {
  std::vector<float> absmax((n + kBlock - 1) / kBlock);
  for (size_t b = 0; b < absmax.size(); ++b) {
    const int64_t lo = static_cast<int64_t>(b) * kBlock;
    absmax[b] = block_absmax(x + lo, std::min<int64_t>(kBlock, n - lo));
  }
  return absmax;
}

// NF4 codes of x(n), two per byte with the first value in the high nibble;
// each value scaled by 1 / its block's absmax as bitsandbytes does.
void nf4_codes(const float* x, int64_t n, const float* absmax, uint8_t* packed) {
  // A block at a time: one reciprocal per block and a branch-free code loop
  // the compiler vectorises (15 compares per value), then the nibble packing.
  uint8_t codes[kBlock];
  for (int64_t lo = 0; lo < n; lo += kBlock) {
    const int64_t m = std::min<int64_t>(kBlock, n - lo);
    const float inv = 1.0f / absmax[lo / kBlock];
    for (int64_t j = 0; j < m; ++j) codes[j] = nf4_code(x[lo + j] * inv);
    for (int64_t j = 0; j < m; j += 2)
      packed[(lo + j) / 2] = static_cast<uint8_t>(codes[j] << 4 | (j + 1 < m ? codes[j + 1] : 0));
  }
}

// Double quantization of the block absmax values, in groups of 256: q(nb) and
// one absmax2 per group appended to `absmax2`.
void dq_groups(const float* absmax, int64_t nb, float offset, uint8_t* q, std::vector<float>& absmax2) {
  const float* map = dynamic_map();
  for (int64_t lo = 0; lo < nb; lo += kGroup) {
    const int64_t n = std::min<int64_t>(kGroup, nb - lo);
    float amax2 = 0.f;
    for (int64_t i = lo; i < lo + n; ++i) amax2 = std::max(amax2, std::fabs(absmax[i] - offset));
    const float inv = 1.0f / amax2;
    for (int64_t i = lo; i < lo + n; ++i) q[i] = dynamic_code(map, (absmax[i] - offset) * inv);
    absmax2.push_back(amax2);
  }
}

void int8_codes(const float* x, int64_t n, const float* absmax, int8_t* q) {
  for (int64_t j = 0; j < n; ++j) {
    const float a = absmax[j / kBlock];
    const float r = a > 0.f ? std::nearbyint(x[j] * (127.0f / a)) : 0.f;
    q[j] = static_cast<int8_t>(std::max(-127.f, std::min(127.f, r)));
  }
}

double sum_of(const std::vector<float>& v) {
  double s = 0;
  for (float a : v) s += a;
  return s;
}

}  // namespace

const float* dynamic_map() {
  static const std::vector<float> map = make_dynamic_map();
  return map.data();
}

Nf4Tensor quantize_nf4(const float* x, int64_t n, bool double_quant) {
  Nf4Tensor t;
  std::vector<float> absmax = block_absmaxes(x, n);
  t.packed.assign((n + 1) / 2, 0);
  nf4_codes(x, n, absmax.data(), t.packed.data());
  if (!double_quant) {
    t.absmax = std::move(absmax);
    return t;
  }
  const int64_t nb = static_cast<int64_t>(absmax.size());
  t.offset = static_cast<float>(sum_of(absmax) / static_cast<double>(nb));
  t.qabsmax.assign(nb, 0);
  dq_groups(absmax.data(), nb, t.offset, t.qabsmax.data(), t.absmax2);
  return t;
}

void dequantize_nf4(const Nf4Tensor& t, int64_t n, float* out) {
  const float* map = dynamic_map();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / kBlock;
    const float absmax = t.absmax.empty() ? map[t.qabsmax[b]] * t.absmax2[b / kGroup] + t.offset : t.absmax[b];
    const uint8_t byte = t.packed[i / 2];
    out[i] = nf4_value((i & 1) ? (byte & 15) : (byte >> 4)) * absmax;
  }
}

Int8Tensor quantize_int8(const float* x, int64_t n) {
  Int8Tensor t;
  t.absmax = block_absmaxes(x, n);
  t.q.assign(n, 0);
  int8_codes(x, n, t.absmax.data(), t.q.data());
  return t;
}

void dequantize_int8(const Int8Tensor& t, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(t.q[i]) * (t.absmax[i / kBlock] / 127.0f);
}

// ---- UnitCodec ---------------------------------------------------------------------

namespace {
int64_t words_for_bytes(int64_t bytes) { return (bytes + 3) / 4; }
}  // namespace

int64_t UnitCodec::item_words(int64_t values) const {
  const int64_t nb = blocks(values);
  if (kind_ == Kind::kNf4) return 1 + words_for_bytes(nb + (values + 1) / 2);
  if (kind_ == Kind::kBf16) return words_for_bytes(2 * values);
  if (kind_ == Kind::kNf4Plain) return nb + words_for_bytes((values + 1) / 2);
  return nb + words_for_bytes(values);
}

UnitCodec::UnitCodec(const Unit& unit, Kind kind, int shards) : kind_(kind), shards_(shards) {
  LLAMAFT_CHECK(kind != Kind::kNone, "UnitCodec needs a storage kind");
  numel_ = unit.numel;
  slots_ = unit.tensors;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const bool q = is_quantized_slot(slots_[i]);
    (q ? qslots_ : plain_).push_back(&slots_[i]);
    (q ? qindex_ : pindex_).push_back(static_cast<int>(i));
  }
  header_words_ = static_cast<int64_t>(qslots_.size());
  for (const auto* p : plain_) {
    plain_word_.push_back(header_words_);
    header_words_ += p->numel();
  }
  // Items: whole double-quant groups, never crossing a tensor.
  std::vector<Item> all;
  for (size_t t = 0; t < qslots_.size(); ++t)
    for (int64_t b = 0; b < qslots_[t]->numel(); b += kGroupValues)
      all.push_back({static_cast<int>(t), b, std::min(kGroupValues, qslots_[t]->numel() - b), 0});
  items_.assign(shards, {});
  const int64_t n = static_cast<int64_t>(all.size());
  shard_words_ = header_words_;
  for (int r = 0; r < shards; ++r) {
    int64_t word = header_words_;
    for (int64_t i = n * r / shards; i < n * (r + 1) / shards; ++i) {
      Item it = all[i];
      it.word = word;
      word += item_words(it.count);
      items_[r].push_back(it);
    }
    shard_words_ = std::max(shard_words_, word);
  }
  for (int r = 0; r < shards; ++r)
    for (const Item& it : items_[r])
      dequant_items_.push_back({r * shard_words_ + it.word, r * shard_words_ + it.tensor,
                                qslots_[it.tensor]->offset + it.begin, it.count});
  for (size_t p = 0; p < plain_.size(); ++p) plain_copies_.push_back({plain_word_[p], plain_[p]->offset, plain_[p]->numel()});
}

std::vector<UnitCodec::SourceRange> UnitCodec::source_ranges(int rank) const {
  std::vector<SourceRange> out;
  for (const Item& it : items_[rank]) {
    const int slot = qindex_[it.tensor];
    if (!out.empty() && out.back().slot == slot && out.back().begin + out.back().count == it.begin)
      out.back().count += it.count;
    else
      out.push_back({slot, it.begin, it.count});
  }
  for (size_t p = 0; p < plain_.size(); ++p) out.push_back({pindex_[p], 0, plain_[p]->numel()});
  return out;
}

bool UnitCodec::serves(const Unit& unit) const {
  if (unit.numel != numel_ || unit.tensors.size() != slots_.size()) return false;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (unit.tensors[i].shape != slots_[i].shape || unit.tensors[i].offset != slots_[i].offset ||
        is_quantized_slot(unit.tensors[i]) != is_quantized_slot(slots_[i]))
      return false;
  return true;
}

void UnitCodec::quantize_region(int rank, float* region, const ReadFn& read, const SumFn& sum_over_ranks) const {
  // One item (at most one double-quantization group, 64 x 256 values) in
  // memory at a time: read, block absmax, codes. Only NF4's block absmax
  // values (1/64 of the values) wait for the offsets, which need every
  // rank's blocks; the scratch is bounded by an item, not by the unit.
  // Items are independent: every core takes its own (`read` must be
  // thread-safe). Each item's bytes are its own, so the result does not
  // depend on the thread count.
  const auto& mine = items_[rank];
  std::fill(region, region + shard_words_, 0.f);
  std::vector<std::vector<float>> absmax(mine.size());
  parallel_for_each<std::vector<float>>(static_cast<int64_t>(mine.size()), true, [&](std::vector<float>& values,
                                                                                        int64_t i) {
    const Item& it = mine[i];
    values.resize(static_cast<size_t>(it.count));
    read(qindex_[it.tensor], it.begin, it.count, values.data());
    const float* x = values.data();
    auto* bytes = reinterpret_cast<uint8_t*>(region + it.word);
    if (kind_ == Kind::kBf16) {
      auto* bits = reinterpret_cast<uint16_t*>(bytes);
      for (int64_t j = 0; j < it.count; ++j) bits[j] = f32_to_bf16(x[j]);
      return;
    }
    std::vector<float> amax = block_absmaxes(x, it.count);
    const int64_t nb = blocks(it.count);
    if (kind_ == Kind::kNf4) {
      nf4_codes(x, it.count, amax.data(), bytes + 4 + nb);
      absmax[i] = std::move(amax);  // for the double quantization below
    } else if (kind_ == Kind::kNf4Plain) {
      std::memcpy(bytes, amax.data(), 4 * nb);
      nf4_codes(x, it.count, amax.data(), bytes + 4 * nb);
    } else {
      std::memcpy(bytes, amax.data(), 4 * nb);
      int8_codes(x, it.count, amax.data(), reinterpret_cast<int8_t*>(bytes + 4 * nb));
    }
  });
  // NF4 with double quantization: offset = the mean of the tensor's block
  // absmax over every rank's blocks.
  std::vector<float> offsets(qslots_.size(), 0.f);
  if (kind_ == Kind::kNf4) {
    std::vector<double> sums(qslots_.size(), 0.0);
    for (size_t i = 0; i < mine.size(); ++i) sums[mine[i].tensor] += sum_of(absmax[i]);
    sum_over_ranks(sums.data(), sums.size());
    for (size_t t = 0; t < qslots_.size(); ++t)
      offsets[t] = static_cast<float>(sums[t] / static_cast<double>(blocks(qslots_[t]->numel())));
    for (size_t i = 0; i < mine.size(); ++i) {
      auto* bytes = reinterpret_cast<uint8_t*>(region + mine[i].word);
      std::vector<float> amax2;  // one group: an item is at most 64 x 256 values
      dq_groups(absmax[i].data(), blocks(mine[i].count), offsets[mine[i].tensor], bytes + 4, amax2);
      std::memcpy(bytes, amax2.data(), 4);
    }
  }
  std::copy(offsets.begin(), offsets.end(), region);
  for (size_t p = 0; p < plain_.size(); ++p) read(pindex_[p], 0, plain_[p]->numel(), region + plain_word_[p]);
}

// T = bf16: each value rounded to bf16 as it is written (one rounding, as
// dequantizing to fp32 and then rounding was), and a bf16 item's words copied
// as they are (widening a bf16 and rounding it back gives the same bits):
// LoRA's bf16 base unit went through an fp32 buffer twice its size, 12% of a
// LoRA bf16 step.
template <typename T>
void UnitCodec::dequantize_t(const float* regions, T* out) const {
  constexpr bool kBf16Out = std::is_same_v<T, bf16>;
  const float* map = dynamic_map();
  for (const PlainCopy& c : plain_copies_) {
    if constexpr (kBf16Out) {
      for (int64_t j = 0; j < c.count; ++j) out[c.dst + j] = bf16(regions[c.src_word + j]);
    } else {
      std::memcpy(out + c.dst, regions + c.src_word, sizeof(float) * c.count);
    }
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < static_cast<int64_t>(dequant_items_.size()); ++i) {
    const DequantItem& it = dequant_items_[i];
    const float* item = regions + it.src_word;
    T* dst = out + it.dst;
    if (kind_ == Kind::kNf4) {
      const float offset = regions[it.offset_word];
      for (int64_t j = 0; j < it.count; ++j) dst[j] = T(nf4_item_value(item, it.count, j, map, offset));
    } else if (kind_ == Kind::kNf4Plain) {
      for (int64_t j = 0; j < it.count; ++j) dst[j] = T(nf4_plain_item_value(item, it.count, j));
    } else if (kind_ == Kind::kBf16) {
      if constexpr (kBf16Out) {
        std::memcpy(dst, item, sizeof(uint16_t) * it.count);
      } else {
        for (int64_t j = 0; j < it.count; ++j) dst[j] = bf16_item_value(item, j);
      }
    } else {
      for (int64_t j = 0; j < it.count; ++j) dst[j] = T(int8_item_value(item, it.count, j));
    }
  }
}
void UnitCodec::dequantize(const float* regions, float* out) const { dequantize_t(regions, out); }
void UnitCodec::dequantize(const float* regions, bf16* out) const { dequantize_t(regions, out); }

void UnitCodec::for_each_item_of(const float* regions, int t,
                                 const std::function<void(const Item&, const uint8_t*)>& fn) const {
  for (int r = 0; r < shards_; ++r)
    for (const Item& it : items_[r])
      if (it.tensor == t) fn(it, reinterpret_cast<const uint8_t*>(regions + r * shard_words_ + it.word));
}

Nf4Tensor UnitCodec::nf4_tensor(const float* regions, int t) const {
  LLAMAFT_CHECK(kind_ == Kind::kNf4 || kind_ == Kind::kNf4Plain, "not an NF4 unit");
  const bool dq = kind_ == Kind::kNf4;
  Nf4Tensor out;
  const int64_t n = qslots_[t]->numel();
  out.packed.assign((n + 1) / 2, 0);
  if (dq) {
    out.qabsmax.assign(blocks(n), 0);
    out.offset = regions[t];
  } else {
    out.absmax.assign(blocks(n), 0.f);
  }
  for_each_item_of(regions, t, [&](const Item& it, const uint8_t* bytes) {
    const int64_t nb = blocks(it.count);
    if (dq) {
      float amax2;
      std::memcpy(&amax2, bytes, 4);
      out.absmax2.push_back(amax2);
      std::memcpy(out.qabsmax.data() + it.begin / kBlock, bytes + 4, nb);
      bytes += 4 + nb;
    } else {
      std::memcpy(out.absmax.data() + it.begin / kBlock, bytes, 4 * nb);
      bytes += 4 * nb;
    }
    std::memcpy(out.packed.data() + it.begin / 2, bytes, (it.count + 1) / 2);
  });
  return out;
}

Int8Tensor UnitCodec::int8_tensor(const float* regions, int t) const {
  LLAMAFT_CHECK(kind_ == Kind::kInt8, "not an int8 unit");
  Int8Tensor out;
  const int64_t n = qslots_[t]->numel();
  out.q.assign(n, 0);
  out.absmax.assign(blocks(n), 0.f);
  for_each_item_of(regions, t, [&](const Item& it, const uint8_t* bytes) {
    const int64_t nb = blocks(it.count);
    std::memcpy(out.absmax.data() + it.begin / kBlock, bytes, 4 * nb);
    std::memcpy(out.q.data() + it.begin, bytes + 4 * nb, it.count);
  });
  return out;
}

}  // namespace llamaft::quant
