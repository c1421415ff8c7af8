// Quantized frozen bases for LoRA and QLoRA.
//
// NF4 is bitsandbytes' quantize_4bit(quant_type="nf4", blocksize=64,
// compress_statistics=True), bit for bit:
//   - per block of 64 values, absmax = max |x|; each value x * (1 / absmax)
//     goes through bitsandbytes' NF4 decision tree (dQuantizeNF4), two codes
//     per byte, the first value in the high nibble;
//   - double quantization: offset = mean(absmax) over the tensor, then
//     absmax - offset is quantized blockwise (256 per block) to 8 bits with
//     bitsandbytes' signed dynamic-tree map (create_dynamic_map) and dQuantize
//     rounding; each group of 256 keeps an fp32 absmax2;
//   - dequantization: (code8[q] * absmax2 + offset) * nf4[code].
// bf16 (quant.base = bf16, or lora with train.param_dtype = bf16) stores the
// frozen linear weights rounded to bf16 (nearest even), the "base in the
// compute dtype" of a bf16 LoRA run.
// int8 (quant.base = int8 under LoRA) is blockwise symmetric absmax int8:
// blocks of 64, q = rint(x * (127 / absmax)) clamped to [-127, 127], one fp32
// absmax per block, dequantized as q * (absmax / 127).
//
// Under FSDP a frozen block unit is stored as a UnitCodec: its linear weights
// quantized and its norms in fp32, laid out rank-major so that each rank
// quantizes and stores whole 64 x 256-value groups of its own (see UnitCodec).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/host_device.hpp"
#include "unit/flat_unit.hpp"

namespace llamaft::quant {

// kNf4Plain: NF4 without double quantization (bitsandbytes'
// compress_statistics=False, BitsAndBytesConfig's bnb_4bit_use_double_quant =
// False): one fp32 absmax per block of 64.
enum class Kind { kNone, kInt8, kNf4, kBf16, kNf4Plain };
Kind parse_kind(const std::string& name);  // none|int8|nf4|bf16|nf4-nodq
const char* kind_name(Kind k);

constexpr int kBlock = 64;              // values per absmax block
constexpr int kGroup = 256;             // absmax values per double-quant group
constexpr int64_t kGroupValues = int64_t{kBlock} * kGroup;

// bitsandbytes' NF4 code (get_4bit_type("nf4")).
LLAMAFT_HD float nf4_value(int code) {
  constexpr float kNf4[16] = {-1.0f,
                              -0.6961928009986877f,
                              -0.5250730514526367f,
                              -0.39491748809814453f,
                              -0.28444138169288635f,
                              -0.18477343022823334f,
                              -0.09105003625154495f,
                              0.0f,
                              0.07958029955625534f,
                              0.16093020141124725f,
                              0.24611230194568634f,
                              0.33791524171829224f,
                              0.44070982933044434f,
                              0.5626170039176941f,
                              0.7229568362236023f,
                              1.0f};
  return kNf4[code & 15];
}

// The nearest NF4 code of a normalised value: thresholds are the midpoints
// of neighbouring codes, compared with `>` as bitsandbytes' tree does (ties
// and NaN go to the lower code).
LLAMAFT_HD uint8_t nf4_code(float x) {
  constexpr float kMid[15] = {-0.8480964004993439f,  -0.6106329262256622f, -0.4599952697753906f,
                              -0.33967943489551544f, -0.23460740596055984f, -0.13791173323988914f,
                              -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,
                              0.2035212516784668f,   0.2920137718319893f,  0.3893125355243683f,
                              0.5016634166240692f,   0.6427869200706482f,  0.8614784181118011f};
  uint8_t c = 0;
  for (int i = 0; i < 15; ++i) c += x > kMid[i] ? 1 : 0;  // the thresholds are sorted: same as the tree
  return c;
}

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8), reproduced to the bit (including torch.linspace's float32
// rounding on x86 CPUs), sorted ascending. 256 values.
const float* dynamic_map();

// bitsandbytes' dQuantize<0>: binary search of a sorted 256-entry map, then
// round to the nearer neighbour (ties to the searched pivot).
LLAMAFT_HD uint8_t dynamic_code(const float* map, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = map[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = map[pivot];
  }
  if (upper_pivot == 255) upper = map[upper_pivot];
  if (lower_pivot == 0) lower = map[lower_pivot];
  if (x > val) {
    const float midpoint = (upper + val) * 0.5f;
    return static_cast<uint8_t>(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return static_cast<uint8_t>(x < midpoint ? lower_pivot : pivot);
}

// One stored item (see UnitCodec), value j of `count`: the shared arithmetic
// of the CPU loop and the CUDA kernel. `item` points at the item's first word.
LLAMAFT_HD float nf4_item_value(const float* item, int64_t count, int64_t j, const float* map, float offset) {
  const int64_t nb = (count + kBlock - 1) / kBlock;
  const auto* qabs = reinterpret_cast<const uint8_t*>(item + 1);
  const uint8_t byte = qabs[nb + j / 2];
  const float absmax = map[qabs[j / kBlock]] * item[0] + offset;
  return nf4_value((j & 1) ? (byte & 15) : (byte >> 4)) * absmax;
}
LLAMAFT_HD float nf4_plain_item_value(const float* item, int64_t count, int64_t j) {
  const int64_t nb = (count + kBlock - 1) / kBlock;
  const uint8_t byte = reinterpret_cast<const uint8_t*>(item + nb)[j / 2];
  return nf4_value((j & 1) ? (byte & 15) : (byte >> 4)) * item[j / kBlock];
}
LLAMAFT_HD float int8_item_value(const float* item, int64_t count, int64_t j) {
  const int64_t nb = (count + kBlock - 1) / kBlock;
  const auto* codes = reinterpret_cast<const int8_t*>(item + nb);
  return static_cast<float>(codes[j]) * (item[j / kBlock] / 127.0f);
}

LLAMAFT_HD float bf16_item_value(const float* item, int64_t j) {
  return bf16_to_f32(reinterpret_cast<const uint16_t*>(item)[j]);
}

// Where dequantization reads and writes, in words of the gathered regions and
// elements of the fp32 unit: what a backend kernel needs, flattened.
struct DequantItem {
  int64_t src_word;     // the item's first word
  int64_t offset_word;  // the word holding its tensor's NF4 offset
  int64_t dst;          // its first value's element in the unit
  int64_t count;        // values
};
struct PlainCopy {
  int64_t src_word, dst, count;  // an fp32 tensor (a norm), copied as is
};

// ---- whole tensors (as bitsandbytes lays them out; used by tests and tools) ----
struct Nf4Tensor {
  std::vector<uint8_t> packed;   // ceil(n / 2)
  std::vector<uint8_t> qabsmax;  // ceil(n / 64) (double quantization)
  std::vector<float> absmax2;    // ceil(blocks / 256) (double quantization)
  float offset = 0;              // (double quantization)
  std::vector<float> absmax;     // ceil(n / 64) (without double quantization)
};
Nf4Tensor quantize_nf4(const float* x, int64_t n, bool double_quant = true);
void dequantize_nf4(const Nf4Tensor& t, int64_t n, float* out);

struct Int8Tensor {
  std::vector<int8_t> q;       // n
  std::vector<float> absmax;   // ceil(n / 64)
};
Int8Tensor quantize_int8(const float* x, int64_t n);
void dequantize_int8(const Int8Tensor& t, int64_t n, float* out);

// ---- a frozen block unit, quantized and sharded ----------------------------------
//
// The unit's linear weights (the slots named *_proj.weight) are cut into
// items of up to 64 x 256 values (one double-quant group each, never
// crossing a tensor); items are dealt to the shard ranks in order, in
// contiguous runs of nearly equal count. Rank r's region of the stored unit
// is: a header (the per-tensor offsets, then every non-quantized tensor in
// fp32, the same on every rank), then its items, each as
//   NF4:  absmax2 (fp32) | qabsmax (u8 x blocks) | codes (u8 x ceil(values/2))
//   NF4 without double quantization: absmax (fp32 x blocks) | codes
//   int8: absmax (fp32 x blocks) | codes (i8 x values)
//   bf16: values (bf16 bits)
// padded to 4 bytes. Regions are padded to the largest, so the stored unit is
// `shards` equal float-sized shards that FSDP gathers like any other unit.
class UnitCodec {
 public:
  UnitCodec(const Unit& unit, Kind kind, int shards);
  UnitCodec(const UnitCodec&) = delete;  // qslots_ / plain_ point into slots_
  UnitCodec& operator=(const UnitCodec&) = delete;

  Kind kind() const { return kind_; }
  int shards() const { return shards_; }
  int64_t shard_words() const { return shard_words_; }   // float-sized words per rank
  int64_t numel() const { return numel_; }                // the dequantized unit's elements
  int num_quantized() const { return static_cast<int>(qslots_.size()); }

  // Fills rank `rank`'s region (shard_words() words). `read(slot_index, elem,
  // count, dst)` reads fp32 source values of the unit's tensor slot_index (an
  // index into Unit::tensors: one codec serves every unit of the same layout);
  // `sum_over_ranks(double*, n)` sums over the shard ranks (NF4's per-tensor
  // absmax mean needs every rank's blocks).
  using ReadFn = std::function<void(int slot_index, int64_t elem, int64_t count, float* dst)>;
  using SumFn = std::function<void(double* data, size_t count)>;
  void quantize_region(int rank, float* region, const ReadFn& read, const SumFn& sum_over_ranks) const;
  // What quantize_region(rank) reads, merged into ranges: (slot index into
  // Unit::tensors, first value, count). For read-ahead.
  struct SourceRange {
    int slot;
    int64_t begin, count;
  };
  std::vector<SourceRange> source_ranges(int rank) const;

  // out(numel) = the whole unit from all regions (shards * shard_words words).
  void dequantize(const float* regions, float* out) const;
  // The same values rounded to bf16 (a bf16 unit's words as they are).
  void dequantize(const float* regions, bf16* out) const;
  // The same work as tables, for backends with their own kernels.
  const std::vector<DequantItem>& dequant_items() const { return dequant_items_; }
  const std::vector<PlainCopy>& plain_copies() const { return plain_copies_; }

  // Test and tool access: the quantized form of quantized tensor `t` as
  // bitsandbytes lays it out, read back from the regions.
  Nf4Tensor nf4_tensor(const float* regions, int t) const;
  Int8Tensor int8_tensor(const float* regions, int t) const;
  int quantized_slot_index(int t) const { return qindex_[t]; }  // into Unit::tensors
  // Whether `unit` has this codec's layout (the same tensors at the same
  // offsets), so this codec can serve it: every block of a model shares one.
  bool serves(const Unit& unit) const;

 private:
  template <typename T>
  void dequantize_t(const float* regions, T* out) const;
  struct Item {
    int tensor;          // index into qslots_
    int64_t begin, count;  // values within the tensor
    int64_t word;        // word offset within the owner's region
  };
  int64_t blocks(int64_t values) const { return (values + kBlock - 1) / kBlock; }
  int64_t item_words(int64_t values) const;
  // fn(item, its bytes in `regions`) for every item of quantized tensor t, in tensor order.
  void for_each_item_of(const float* regions, int t, const std::function<void(const Item&, const uint8_t*)>& fn) const;

  Kind kind_;
  int shards_;
  int64_t numel_ = 0, header_words_ = 0, shard_words_ = 0;
  std::vector<TensorSlot> slots_;                    // the layout (copied; names are the first unit's)
  std::vector<const TensorSlot*> qslots_, plain_;    // quantized and fp32 tensors, into slots_
  std::vector<int> qindex_, pindex_;                 // their indices in Unit::tensors
  std::vector<int64_t> plain_word_;                  // header word of each plain tensor
  std::vector<std::vector<Item>> items_;             // per rank
  std::vector<DequantItem> dequant_items_;
  std::vector<PlainCopy> plain_copies_;
};

// Whether a slot is one of the linear weights a quantized base stores quantized.
bool is_quantized_slot(const TensorSlot& s);

}  // namespace llamaft::quant
