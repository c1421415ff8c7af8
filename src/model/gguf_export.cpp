// HF Llama (+ adapter) -> GGUF; see gguf_export.hpp. The plan (names,
// shapes, types, metadata) is made and checked before any weight is read;
// then each tensor is read, merged with its adapter, permuted and quantized
// on its own while the writer streams the file.
#include "model/gguf_export.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "core/util.hpp"
#include "data/gguf_vocab.hpp"
#include "io/gguf_quantize.hpp"
#include "io/gguf_writer.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/gguf_import.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "model/param_layout.hpp"

namespace llamaft {

namespace {

namespace fs = std::filesystem;
using io::GgmlType;

uint32_t t(GgmlType g) { return static_cast<uint32_t>(g); }

// One tensor of the file: where its values come from and how it is stored.
struct PlannedTensor {
  std::string gguf_name;
  std::string hf_name;       // "" for rope_freqs.weight (computed)
  std::vector<int64_t> ne;   // ggml order
  uint32_t type = 0;
  int layer = -1;
  bool permute_heads = false;
  int64_t heads = 0;         // q: attention heads, k: kv heads
};

// llama_model_loader's weight_name_comparer: tensors outside the blocks
// first, then block by block; by name within each.
bool loader_order(const PlannedTensor& a, const PlannedTensor& b) {
  if (a.layer != b.layer) return a.layer < b.layer;
  return a.gguf_name < b.gguf_name;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama_tensor_get_type's use_more_bits: the first and last eighth of the
// layers and every third one between them.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// tensor_type_fallback: a row that is not whole blocks of the chosen type.
uint32_t fallback(uint32_t type, int64_t ne0, const std::string& name) {
  if (ne0 % io::ggml_block_values(type) == 0) return type;
  uint32_t to = type;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ4_K: to = t(GgmlType::kQ5_0); break;
    case GgmlType::kQ6_K: to = t(GgmlType::kQ8_0); break;
    case GgmlType::kQ5_K: to = 7; break;  // Q5_1, which export does not write: refused below
    default: break;                      // 32-value types: F16 below
  }
  if (ne0 % io::ggml_block_values(to) != 0) to = t(GgmlType::kF16);
  LLAMAFT_REQUIRE(io::ggml_type_quantizable(to), "export: tensor '", name, "' (rows of ", ne0,
                  ") would fall back to ", io::ggml_type_name(to), " as llama-quantize does, which export does not write");
  return to;
}

// The stored type of one tensor. f32..q8_0: convert_hf_to_gguf.py's choice;
// q4_0 and q4_k_m: llama-quantize's (llama_tensor_get_type for a llama model
// without experts or an importance matrix, from an F32 file).
uint32_t choose_type(GgufOutType out, const PlannedTensor& p, const LlamaConfig& c) {
  if (p.ne.size() < 2 || ends_with(p.gguf_name, "_norm.weight") || p.hf_name.empty()) return t(GgmlType::kF32);
  const int64_t ne0 = p.ne[0];
  switch (out) {
    case GgufOutType::kF32: return t(GgmlType::kF32);
    case GgufOutType::kF16: return t(GgmlType::kF16);
    case GgufOutType::kBF16: return t(GgmlType::kBF16);
    case GgufOutType::kQ8_0: return ne0 % 32 == 0 ? t(GgmlType::kQ8_0) : t(GgmlType::kF16);
    case GgufOutType::kQ4_0: case GgufOutType::kQ4_K_M: break;
  }
  const bool k_m = out == GgufOutType::kQ4_K_M;
  const uint32_t def = k_m ? t(GgmlType::kQ4_K) : t(GgmlType::kQ4_0);
  uint32_t type = def;
  const bool is_output = p.gguf_name == "output.weight" || (c.tie_word_embeddings && p.gguf_name == "token_embd.weight");
  if (is_output) {
    type = ne0 % io::ggml_block_values(def) != 0 ? t(GgmlType::kQ8_0) : t(GgmlType::kQ6_K);
  } else if (k_m && ends_with(p.gguf_name, ".attn_v.weight")) {
    if (use_more_bits(p.layer, c.num_hidden_layers)) type = t(GgmlType::kQ6_K);
    // LLM_TYPE_70B (80 layers, grouped-query attention): attn_v one step up.
    else if (c.num_hidden_layers == 80 && c.num_attention_heads != c.num_key_value_heads) type = t(GgmlType::kQ5_K);
  } else if (k_m && ends_with(p.gguf_name, ".ffn_down.weight")) {
    if (use_more_bits(p.layer, c.num_hidden_layers)) type = t(GgmlType::kQ6_K);
  }
  return fallback(type, ne0, p.gguf_name);
}

std::vector<PlannedTensor> plan_tensors(const LlamaConfig& c, GgufOutType out) {
  const ParamLayout layout(c);
  std::vector<PlannedTensor> plan;
  for (const Unit& u : layout.units())
    for (const TensorSlot& s : u.tensors) {
      PlannedTensor p;
      p.hf_name = s.hf_name;
      p.gguf_name = gguf_tensor_name(s.hf_name);
      p.ne.assign(s.shape.rbegin(), s.shape.rend());
      p.layer = u.kind == UnitKind::kBlock ? u.layer : -1;
      if (ends_with(s.hf_name, "self_attn.q_proj.weight")) p.permute_heads = true, p.heads = c.num_attention_heads;
      if (ends_with(s.hf_name, "self_attn.k_proj.weight")) p.permute_heads = true, p.heads = c.num_key_value_heads;
      plan.push_back(std::move(p));
    }
  if (c.rope_scaling.type == "llama3") {
    PlannedTensor p;
    p.gguf_name = "rope_freqs.weight";
    p.ne = {c.head_dim / 2};
    plan.push_back(std::move(p));
  }
  std::sort(plan.begin(), plan.end(), loader_order);
  for (auto& p : plan) p.type = choose_type(out, p, c);
  return plan;
}

// convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors: Llama 3's RoPE
// scaling as per-frequency divisors, computed in fp32 as the converter's
// torch code computes them.
std::vector<float> llama3_rope_factors(const LlamaConfig& c) {
  const RopeScaling& r = c.rope_scaling;
  const int64_t dim = c.head_dim;
  const float factor = static_cast<float>(r.factor), low = static_cast<float>(r.low_freq_factor);
  const double old_len = static_cast<double>(r.original_max_position_embeddings);
  const float low_wavelen = static_cast<float>(old_len / r.low_freq_factor);
  const float high_wavelen = static_cast<float>(old_len / r.high_freq_factor);
  const float two_pi = static_cast<float>(2 * M_PI);
  const float band = static_cast<float>(r.high_freq_factor - r.low_freq_factor);
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), static_cast<float>(i) / static_cast<float>(dim));
    const float wavelen = two_pi / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.f);
    } else if (wavelen > low_wavelen) {
      out.push_back(factor);
    } else {
      const float smooth = (static_cast<float>(old_len) / wavelen - low) / band;
      out.push_back(1.f / ((1.f - smooth) / factor + smooth));
    }
  }
  return out;
}

// gguf-py's size_label (model_weight_count_rounded_notation, min_digits 2).
std::string size_label(int64_t params) {
  const double n = static_cast<double>(params);
  double scaled = n * 1e-3;
  const char* suffix = "K";
  if (n > 1e12) scaled = n * 1e-12, suffix = "T";
  else if (n > 1e9) scaled = n * 1e-9, suffix = "B";
  else if (n > 1e6) scaled = n * 1e-6, suffix = "M";
  std::string digits = std::to_string(static_cast<int64_t>(std::nearbyint(scaled)));
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
  const int fix = std::max(2 - static_cast<int>(digits.size()), 0);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f%s", fix, scaled, suffix);
  return buf;
}

// Everything the file says besides the tensors, in the converter's order.
void add_metadata(io::GgufWriter& w, const LlamaConfig& c, GgufOutType out, const GgufVocab& v, const std::string& name,
                  int64_t params) {
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "model");
  w.add_string("general.name", name);
  w.add_string("general.size_label", size_label(params));
  w.add_u32("llama.block_count", static_cast<uint32_t>(c.num_hidden_layers));
  w.add_u32("llama.context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.add_u32("llama.embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.add_u32("llama.feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.add_u32("llama.attention.head_count", static_cast<uint32_t>(c.num_attention_heads));
  w.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.num_key_value_heads));
  if (c.rope_scaling.type == "linear") {
    w.add_string("llama.rope.scaling.type", "linear");
    w.add_f32("llama.rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }
  w.add_f32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.add_u32("llama.attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.add_u32("llama.attention.value_length", static_cast<uint32_t>(c.head_dim));
  w.add_u32("general.file_type", gguf_file_type(out));
  w.add_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  w.add_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  w.add_u32("general.quantization_version", 2);  // GGML_QNT_VERSION
  if (v.add_space_prefix >= 0) w.add_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix == 1);
  w.add_string("tokenizer.ggml.model", v.model);
  w.add_string("tokenizer.ggml.pre", v.pre);
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.add_f32_array("tokenizer.ggml.scores", v.scores);
  w.add_i32_array("tokenizer.ggml.token_type", v.token_types);
  if (!v.merges.empty()) w.add_string_array("tokenizer.ggml.merges", v.merges);
  for (const auto& [type, id] : v.special_ids) w.add_u32(gguf_special_id_key(type), static_cast<uint32_t>(id));
  for (const auto& [type, on] : v.add_special) w.add_bool("tokenizer.ggml.add_" + type + "_token", on);
  if (v.has_chat_template) w.add_string("tokenizer.chat_template", v.chat_template);
}

// The checked inputs of one export.
struct Prepared {
  LlamaConfig config;
  LoraSpec lora;
  std::vector<PlannedTensor> plan;
  GgufVocab vocab;
  std::string name;
};

Prepared prepare(const GgufExportSource& src, GgufOutType type) {
  Prepared p;
  p.config = read_model_config(src.model_dir);
  p.config.validate(src.model_dir + "/config.json");
  if (!src.adapter_dir.empty()) p.lora = read_adapter_config(src.adapter_dir);
  p.plan = plan_tensors(p.config, type);
  p.vocab = gguf_vocab_from_files(src.tokenizer, src.model_dir, p.config.vocab_size);
  p.name = src.name;
  if (p.name.empty()) {
    fs::path dir = fs::absolute(src.model_dir).lexically_normal();
    if (dir.filename().empty()) dir = dir.parent_path();
    p.name = dir.filename().string();
  }
  return p;
}

// out(rows, cols) <- in(rows, cols) with each head's rows (2, hd/2)
// interleaved to (hd/2, 2): convert_hf_to_gguf.py's LlamaModel.permute, the
// inverse of what gguf_import undoes.
void permute_heads(const float* in, float* out, int64_t rows, int64_t cols, int64_t heads) {
  const int64_t hd = rows / heads, half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(out + (h * hd + 2 * j + i) * cols, in + (h * hd + i * half + j) * cols,
                    sizeof(float) * static_cast<size_t>(cols));
}

int64_t numel_of(const std::vector<int64_t>& ne) {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// export writes a new .gguf file, or with --force replaces a GGUF, never
// another file (a model's safetensors, a config) nor a folder.
void check_output_path(const std::string& out_path, bool force) {
  std::error_code ec;
  LLAMAFT_REQUIRE(!fs::is_directory(out_path, ec), "export: --output '", out_path,
                  "' is a folder; give the .gguf file to write");
  if (!fs::exists(out_path, ec)) return;
  LLAMAFT_REQUIRE(force, "export: '", out_path, "' already exists; pass --force to replace it");
  char magic[4] = {};
  std::FILE* f = std::fopen(out_path.c_str(), "rb");
  const bool gguf = f && std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  if (f) std::fclose(f);
  LLAMAFT_REQUIRE(gguf, "export: '", out_path, "' exists and is not a GGUF file; refusing to replace it even with --force");
}

// Every planned tensor read from the model is there, in the shape config.json implies.
void check_model_tensors(const Prepared& p, const io::HfTensorSet& weights, const std::string& model_dir) {
  for (const auto& pt : p.plan) {
    if (pt.hf_name.empty()) continue;
    LLAMAFT_REQUIRE(weights.has(pt.hf_name), model_dir, ": tensor '", pt.hf_name,
                    "' is missing from the safetensors files (config.json says it must exist)");
    std::vector<int64_t> shape(pt.ne.rbegin(), pt.ne.rend());
    LLAMAFT_REQUIRE(weights.info(pt.hf_name).shape == shape, model_dir, ": tensor '", pt.hf_name, "' has shape ",
                    shape_str(weights.info(pt.hf_name).shape), " but config.json implies ", shape_str(shape));
  }
}

// The adapter, read exactly as merge reads it, and folded in as merge folds
// it (the same GEMM on the CPU backend), so export --adapter and export of
// merge's folder write the same bytes.
class AdapterFold {
 public:
  AdapterFold(const Prepared& p, const std::string& adapter_dir)
      : lora_(p.lora), adapter_dir_(adapter_dir), scale_(p.lora.enabled() ? p.lora.scale() : 0.f) {
    if (!lora_.enabled()) return;
    layout_ = std::make_unique<ParamLayout>(p.config, lora_);
    adapter_ = std::make_unique<io::SafetensorsFile>(adapter_dir + "/adapter_model.safetensors");
    check_adapter_tensors(*adapter_, *layout_, adapter_dir);
    cpu_ = make_cpu_backend();
  }
  bool enabled() const { return layout_ != nullptr; }

  // W(out, in) += scale * B(out, r) @ A(r, in) for each adapted target of
  // block tensor pt, whose values are W.
  void fold(const PlannedTensor& pt, std::vector<float>& values) {
    const Unit& lora_unit = layout_->units()[layout_->lora_unit(pt.layer)];
    for (int target = 0; target < kNumLoraTargets; ++target) {
      if (!lora_.targets[target] || !ends_with(pt.hf_name, std::string(lora_target_name(target)) + ".weight"))
        continue;
      const std::string module = std::string(lora_target_name(target));
      const TensorSlot& a = lora_unit.slot(module + ".lora_A.weight");
      const TensorSlot& b = lora_unit.slot(module + ".lora_B.weight");
      lora_a_.resize(static_cast<size_t>(a.numel()));
      lora_b_.resize(static_cast<size_t>(b.numel()));
      adapter_->read_f32(adapter_tensor(*adapter_, a, adapter_dir_), 0, a.numel(), lora_a_.data());
      adapter_->read_f32(adapter_tensor(*adapter_, b, adapter_dir_), 0, b.numel(), lora_b_.data());
      const int out_dim = static_cast<int>(b.shape[0]), in_dim = static_cast<int>(a.shape[1]);
      cpu_->gemm(false, false, out_dim, in_dim, lora_.rank, scale_, lora_b_.data(), lora_.rank, lora_a_.data(), in_dim,
                 1.f, values.data(), in_dim);
    }
  }

 private:
  const LoraSpec& lora_;
  std::string adapter_dir_;
  float scale_;
  std::unique_ptr<ParamLayout> layout_;
  std::unique_ptr<io::SafetensorsFile> adapter_;
  std::unique_ptr<Backend> cpu_;
  std::vector<float> lora_a_, lora_b_;
};

}  // namespace

GgufOutType parse_gguf_outtype(const std::string& name) {
  static const std::pair<const char*, GgufOutType> kTypes[] = {
      {"f32", GgufOutType::kF32},   {"f16", GgufOutType::kF16},   {"bf16", GgufOutType::kBF16},
      {"q8_0", GgufOutType::kQ8_0}, {"q4_0", GgufOutType::kQ4_0}, {"q4_k_m", GgufOutType::kQ4_K_M}};
  for (const auto& [n, t] : kTypes)
    if (name == n) return t;
  LLAMAFT_FAIL("GGUF outtype '", name, "' is not supported (supported: f32, f16, bf16, q8_0, q4_0, q4_k_m)");
}

const char* gguf_outtype_name(GgufOutType type) {
  switch (type) {
    case GgufOutType::kF32: return "f32";
    case GgufOutType::kF16: return "f16";
    case GgufOutType::kBF16: return "bf16";
    case GgufOutType::kQ8_0: return "q8_0";
    case GgufOutType::kQ4_0: return "q4_0";
    case GgufOutType::kQ4_K_M: return "q4_k_m";
  }
  return "?";
}

uint32_t gguf_file_type(GgufOutType type) {
  switch (type) {
    case GgufOutType::kF32: return 0;     // LLAMA_FTYPE_ALL_F32
    case GgufOutType::kF16: return 1;     // MOSTLY_F16
    case GgufOutType::kBF16: return 32;   // MOSTLY_BF16
    case GgufOutType::kQ8_0: return 7;    // MOSTLY_Q8_0
    case GgufOutType::kQ4_0: return 2;    // MOSTLY_Q4_0
    case GgufOutType::kQ4_K_M: return 15; // MOSTLY_Q4_K_M
  }
  return 0;
}

void check_gguf_exportable(const GgufExportSource& src, GgufOutType type) { (void)prepare(src, type); }

GgufExportReport export_gguf(const GgufExportSource& src, GgufOutType type, const std::string& out_path, bool force) {
  const auto t0 = std::chrono::steady_clock::now();
  check_output_path(out_path, force);
  Prepared p = prepare(src, type);
  const LlamaConfig& c = p.config;
  const io::HfTensorSet weights(src.model_dir);
  check_model_tensors(p, weights, src.model_dir);
  AdapterFold adapter(p, src.adapter_dir);

  int64_t params = 0;
  for (const auto& pt : p.plan) params += numel_of(pt.ne);
  io::GgufWriter w;
  add_metadata(w, c, type, p.vocab, p.name, params);
  for (const auto& pt : p.plan) w.add_tensor(pt.gguf_name, pt.ne, pt.type);

  const std::vector<float> rope_factors = c.rope_scaling.type == "llama3" ? llama3_rope_factors(c) : std::vector<float>();
  std::vector<float> values, staged;
  w.write(out_path, [&](size_t i, uint8_t* dst) {
    const PlannedTensor& pt = p.plan[i];
    const int64_t numel = numel_of(pt.ne);
    if (pt.hf_name.empty()) {
      values = rope_factors;
    } else {
      values.resize(static_cast<size_t>(numel));
      weights.read_f32(pt.hf_name, 0, numel, values.data());
      if (adapter.enabled() && pt.layer >= 0) adapter.fold(pt, values);
      require_finite(values.data(), values.size(), src.model_dir + ": tensor '" + pt.hf_name + "'" +
                                                       (adapter.enabled() ? " (with the adapter folded in)" : ""));
      if (pt.permute_heads) {
        staged.resize(values.size());
        permute_heads(values.data(), staged.data(), pt.ne[1], pt.ne[0], pt.heads);
        values.swap(staged);
      }
    }
    const int64_t rows = numel / pt.ne[0];
    io::quantize_gguf_rows(pt.type, values.data(), dst, rows, pt.ne[0]);
  });

  GgufExportReport r;
  r.bytes = w.file_size();
  r.parameters = params;
  for (const auto& pt : p.plan) ++r.tensor_types[io::ggml_type_name(pt.type)];
  r.tokenizer = p.vocab.source;
  r.notes = p.vocab.notes;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace llamaft
