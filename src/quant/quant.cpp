#include "quant/quant.hpp"

#include <cmath>
#include <cstring>

#include "core/error.hpp"

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
  float m = 0.f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// NF4 codes of one block (at most 64 values) into packed bytes; `first` is the
// value index of x[0] within the tensor (even at block starts).
void nf4_block(const float* x, int64_t n, float absmax, uint8_t* packed) {
  const float inv = 1.0f / absmax;
  for (int64_t j = 0; j < n; j += 2) {
    uint8_t byte = static_cast<uint8_t>(nf4_code(x[j] * inv) << 4);
    if (j + 1 < n) byte |= nf4_code(x[j + 1] * inv);
    packed[j / 2] = byte;
  }
}

// Double quantization of one group of up to 256 block absmax values.
float dq_group(const float* absmax, int64_t n, float offset, uint8_t* q) {
  const float* map = dynamic_map();
  float amax2 = 0.f;
  for (int64_t i = 0; i < n; ++i) amax2 = std::max(amax2, std::fabs(absmax[i] - offset));
  const float inv = 1.0f / amax2;
  for (int64_t i = 0; i < n; ++i) q[i] = dynamic_code(map, (absmax[i] - offset) * inv);
  return amax2;
}

void int8_block(const float* x, int64_t n, float absmax, int8_t* q) {
  const float inv = 127.0f / absmax;
  for (int64_t j = 0; j < n; ++j) {
    const float r = absmax > 0.f ? std::nearbyint(x[j] * inv) : 0.f;
    q[j] = static_cast<int8_t>(std::max(-127.f, std::min(127.f, r)));
  }
}

}  // namespace

const float* dynamic_map() {
  static const std::vector<float> map = make_dynamic_map();
  return map.data();
}

Nf4Tensor quantize_nf4(const float* x, int64_t n, bool double_quant) {
  Nf4Tensor t;
  const int64_t nb = (n + kBlock - 1) / kBlock;
  t.packed.assign((n + 1) / 2, 0);
  std::vector<float> absmax(nb);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kBlock, cnt = std::min<int64_t>(kBlock, n - lo);
    absmax[b] = block_absmax(x + lo, cnt);
    nf4_block(x + lo, cnt, absmax[b], t.packed.data() + lo / 2);
  }
  if (!double_quant) {
    t.absmax = std::move(absmax);
    return t;
  }
  double sum = 0;
  for (float a : absmax) sum += a;
  t.offset = static_cast<float>(sum / static_cast<double>(nb));
  t.qabsmax.assign(nb, 0);
  for (int64_t g = 0; g * kGroup < nb; ++g) {
    const int64_t lo = g * kGroup, cnt = std::min<int64_t>(kGroup, nb - lo);
    t.absmax2.push_back(dq_group(absmax.data() + lo, cnt, t.offset, t.qabsmax.data() + lo));
  }
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
  const int64_t nb = (n + kBlock - 1) / kBlock;
  t.q.assign(n, 0);
  t.absmax.resize(nb);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kBlock, cnt = std::min<int64_t>(kBlock, n - lo);
    t.absmax[b] = block_absmax(x + lo, cnt);
    int8_block(x + lo, cnt, t.absmax[b], t.q.data() + lo);
  }
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

bool UnitCodec::serves(const Unit& unit) const {
  if (unit.numel != numel_ || unit.tensors.size() != slots_.size()) return false;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (unit.tensors[i].shape != slots_[i].shape || unit.tensors[i].offset != slots_[i].offset ||
        is_quantized_slot(unit.tensors[i]) != is_quantized_slot(slots_[i]))
      return false;
  return true;
}

void UnitCodec::quantize_items(int rank, float* region, const std::vector<std::vector<float>>& values,
                               const std::vector<float>& offsets) const {
  for (int t = 0; t < num_quantized(); ++t) region[t] = offsets[t];
  const auto& mine = items_[rank];
  for (size_t i = 0; i < mine.size(); ++i) {
    const Item& it = mine[i];
    const float* x = values[i].data();
    const int64_t nb = blocks(it.count);
    auto* bytes = reinterpret_cast<uint8_t*>(region + it.word);
    if (kind_ == Kind::kNf4) {
      std::vector<float> absmax(nb);
      uint8_t* qabs = bytes + 4;
      uint8_t* codes = qabs + nb;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t lo = b * kBlock, cnt = std::min<int64_t>(kBlock, it.count - lo);
        absmax[b] = block_absmax(x + lo, cnt);
        nf4_block(x + lo, cnt, absmax[b], codes + lo / 2);
      }
      const float amax2 = dq_group(absmax.data(), nb, offsets[it.tensor], qabs);
      std::memcpy(bytes, &amax2, 4);
    } else if (kind_ == Kind::kNf4Plain) {
      auto* absmax = reinterpret_cast<float*>(bytes);
      uint8_t* codes = bytes + 4 * nb;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t lo = b * kBlock, cnt = std::min<int64_t>(kBlock, it.count - lo);
        absmax[b] = block_absmax(x + lo, cnt);
        nf4_block(x + lo, cnt, absmax[b], codes + lo / 2);
      }
    } else if (kind_ == Kind::kBf16) {
      auto* bits = reinterpret_cast<uint16_t*>(bytes);
      for (int64_t j = 0; j < it.count; ++j) bits[j] = f32_to_bf16(x[j]);
    } else {
      auto* absmax = reinterpret_cast<float*>(bytes);
      auto* codes = reinterpret_cast<int8_t*>(bytes + 4 * nb);
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t lo = b * kBlock, cnt = std::min<int64_t>(kBlock, it.count - lo);
        absmax[b] = block_absmax(x + lo, cnt);
        int8_block(x + lo, cnt, absmax[b], codes + lo);
      }
    }
  }
}

void UnitCodec::dequantize(const float* regions, float* out) const {
  const float* map = dynamic_map();
  for (const PlainCopy& c : plain_copies_) std::memcpy(out + c.dst, regions + c.src_word, sizeof(float) * c.count);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < static_cast<int64_t>(dequant_items_.size()); ++i) {
    const DequantItem& it = dequant_items_[i];
    const float* item = regions + it.src_word;
    float* dst = out + it.dst;
    if (kind_ == Kind::kNf4) {
      const float offset = regions[it.offset_word];
      for (int64_t j = 0; j < it.count; ++j) dst[j] = nf4_item_value(item, it.count, j, map, offset);
    } else if (kind_ == Kind::kNf4Plain) {
      for (int64_t j = 0; j < it.count; ++j) dst[j] = nf4_plain_item_value(item, it.count, j);
    } else if (kind_ == Kind::kBf16) {
      for (int64_t j = 0; j < it.count; ++j) dst[j] = bf16_item_value(item, j);
    } else {
      for (int64_t j = 0; j < it.count; ++j) dst[j] = int8_item_value(item, it.count, j);
    }
  }
}

Nf4Tensor UnitCodec::nf4_tensor(const float* regions, int t) const {
  LLAMAFT_CHECK(kind_ == Kind::kNf4 || kind_ == Kind::kNf4Plain, "not an NF4 unit");
  Nf4Tensor out;
  const int64_t n = qslots_[t]->numel();
  out.packed.assign((n + 1) / 2, 0);
  if (kind_ == Kind::kNf4Plain) {
    out.absmax.assign(blocks(n), 0.f);
    for (int r = 0; r < shards_; ++r)
      for (const Item& it : items_[r]) {
        if (it.tensor != t) continue;
        const auto* bytes = reinterpret_cast<const uint8_t*>(regions + r * shard_words_ + it.word);
        const int64_t nb = blocks(it.count);
        std::memcpy(out.absmax.data() + it.begin / kBlock, bytes, 4 * nb);
        std::memcpy(out.packed.data() + it.begin / 2, bytes + 4 * nb, (it.count + 1) / 2);
      }
    return out;
  }
  out.qabsmax.assign(blocks(n), 0);
  out.offset = regions[t];
  for (int r = 0; r < shards_; ++r)
    for (const Item& it : items_[r]) {
      if (it.tensor != t) continue;
      const auto* bytes = reinterpret_cast<const uint8_t*>(regions + r * shard_words_ + it.word);
      const int64_t nb = blocks(it.count);
      float amax2;
      std::memcpy(&amax2, bytes, 4);
      out.absmax2.push_back(amax2);
      std::memcpy(out.qabsmax.data() + it.begin / kBlock, bytes + 4, nb);
      std::memcpy(out.packed.data() + it.begin / 2, bytes + 4 + nb, (it.count + 1) / 2);
    }
  return out;
}

Int8Tensor UnitCodec::int8_tensor(const float* regions, int t) const {
  LLAMAFT_CHECK(kind_ == Kind::kInt8, "not an int8 unit");
  Int8Tensor out;
  const int64_t n = qslots_[t]->numel();
  out.q.assign(n, 0);
  out.absmax.assign(blocks(n), 0.f);
  for (int r = 0; r < shards_; ++r)
    for (const Item& it : items_[r]) {
      if (it.tensor != t) continue;
      const auto* bytes = reinterpret_cast<const uint8_t*>(regions + r * shard_words_ + it.word);
      const int64_t nb = blocks(it.count);
      std::memcpy(out.absmax.data() + it.begin / kBlock, bytes, 4 * nb);
      std::memcpy(out.q.data() + it.begin, bytes + 4 * nb, it.count);
    }
  return out;
}

}  // namespace llamaft::quant
