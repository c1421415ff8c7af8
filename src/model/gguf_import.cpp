// GGUF (llama architecture) -> HF Llama: config, names, q/k rows. See
// gguf_import.hpp.
#include "model/gguf_import.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {

// The llama.* keys convert reads. Any other llama.* key may change the math
// (an expert count, a sliding window, ...) and is refused.
const std::set<std::string>& known_llama_keys() {
  static const std::set<std::string> keys = {
      "llama.context_length",         "llama.embedding_length",       "llama.block_count",
      "llama.feed_forward_length",    "llama.attention.head_count",   "llama.attention.head_count_kv",
      "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "llama.rope.dimension_count",
      "llama.vocab_size",             "llama.attention.key_length",   "llama.attention.value_length",
      "llama.rope.scaling.type",      "llama.rope.scaling.factor",    "llama.rope.scaling.original_context_length",
      "llama.rope.scaling.finetuned",
  };
  return keys;
}

// A float32 metadata value as the decimal it was written from: the shortest
// decimal that rounds to the same float32 (9.99999974738e-06 -> 1e-05), so
// config.json reads as the original did. float64 values are taken as they are.
double metadata_number(const io::GgufFile& f, const std::string& key, double fallback) {
  const io::GgufValue* v = f.find(key);
  if (!v) return fallback;
  const double x = f.get_float(key);
  if (v->type != io::GgufValueType::kFloat32 || !std::isfinite(x)) return x;
  const float target = static_cast<float>(x);
  char buf[48];
  for (int prec = 1; prec <= 9; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, x);
    if (std::strtof(buf, nullptr) == target) return std::strtod(buf, nullptr);
  }
  return x;
}

// HF name -> GGUF name (llama.cpp's tensor names for LLM_ARCH_LLAMA).
std::string gguf_name_of(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::pair<const char*, const char*> kBlock[] = {
      {"input_layernorm.weight", "attn_norm.weight"},  {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},    {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},     {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  const std::string prefix = "model.layers.";
  LLAMAFT_CHECK(hf.compare(0, prefix.size(), prefix) == 0, "no GGUF name for ", hf);
  const size_t dot = hf.find('.', prefix.size());
  const std::string layer = hf.substr(prefix.size(), dot - prefix.size()), rest = hf.substr(dot + 1);
  for (const auto& [h, g] : kBlock)
    if (rest == h) return "blk." + layer + "." + g;
  LLAMAFT_CHECK(false, "no GGUF name for ", hf);
  return "";
}

}  // namespace

std::string gguf_tensor_name(const std::string& hf_name) { return gguf_name_of(hf_name); }

LlamaConfig llama_config_from_gguf(const io::GgufFile& f) {
  const std::string& path = f.path();
  const std::string arch = f.get_string("general.architecture");
  LLAMAFT_REQUIRE(arch == "llama", path, ": general.architecture is '", arch,
                  "'; convert supports the 'llama' architecture only");
  LLAMAFT_REQUIRE(f.get_int_or("split.count", 1) == 1, path, ": a split GGUF (split.count = ",
                  f.get_int_or("split.count", 1), "); merge the parts with llama-gguf-split --merge first");
  for (const auto& [key, value] : f.metadata())
    LLAMAFT_REQUIRE(key.rfind("llama.", 0) != 0 || known_llama_keys().count(key), path, ": GGUF metadata '", key,
                    "' is not understood by convert (it may change the model's math); refusing to guess");
  LlamaConfig c;
  c.num_hidden_layers = f.get_int("llama.block_count");
  c.hidden_size = f.get_int("llama.embedding_length");
  c.intermediate_size = f.get_int("llama.feed_forward_length");
  c.num_attention_heads = f.get_int("llama.attention.head_count");
  c.num_key_value_heads = f.get_int_or("llama.attention.head_count_kv", c.num_attention_heads);
  LLAMAFT_REQUIRE(c.num_attention_heads > 0 && c.hidden_size > 0, path, ": head_count and embedding_length must be positive");
  c.head_dim = f.get_int_or("llama.attention.key_length", c.hidden_size / c.num_attention_heads);
  LLAMAFT_REQUIRE(f.get_int_or("llama.attention.value_length", c.head_dim) == c.head_dim, path,
                  ": llama.attention.value_length differs from key_length; a Llama has one head_dim");
  LLAMAFT_REQUIRE(f.get_int_or("llama.rope.dimension_count", c.head_dim) == c.head_dim, path,
                  ": llama.rope.dimension_count = ", f.get_int_or("llama.rope.dimension_count", 0),
                  " is not head_dim = ", c.head_dim, " (partial rotary embeddings are not supported)");
  c.max_position_embeddings = f.get_int_or("llama.context_length", 2048);
  c.rms_norm_eps = metadata_number(f, "llama.attention.layer_norm_rms_epsilon", 1e-5);
  c.rope_theta = metadata_number(f, "llama.rope.freq_base", 10000.0);
  const std::string scaling = f.get_string_or("llama.rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = metadata_number(f, "llama.rope.scaling.factor", 0);
  } else {
    LLAMAFT_REQUIRE(scaling == "none", path, ": llama.rope.scaling.type '", scaling,
                    "' is not supported by convert (supported: none, linear)");
  }
  LLAMAFT_REQUIRE(!f.find_tensor("rope_freqs.weight"), path,
                  ": has rope_freqs.weight (Llama 3.1-style RoPE factors), which convert cannot map back to "
                  "rope_scaling parameters without guessing");
  const io::GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  LLAMAFT_REQUIRE(embd && embd->ne.size() == 2, path, ": no 2-D token_embd.weight tensor");
  c.vocab_size = embd->ne[1];
  LLAMAFT_REQUIRE(f.get_int_or("llama.vocab_size", c.vocab_size) == c.vocab_size, path, ": llama.vocab_size = ",
                  f.get_int_or("llama.vocab_size", 0), " but token_embd.weight has ", c.vocab_size, " rows");
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.bos_token_id = f.get_int_or("tokenizer.ggml.bos_token_id", 1);
  c.eos_token_ids = {f.get_int_or("tokenizer.ggml.eos_token_id", 2)};
  c.validate(path);
  return c;
}

const io::GgufTensorInfo& gguf_tensor_for(const io::GgufFile& f, const TensorSlot& slot) {
  const std::string name = gguf_name_of(slot.hf_name);
  const io::GgufTensorInfo* t = f.find_tensor(name);
  LLAMAFT_REQUIRE(t, f.path(), ": tensor '", name, "' (", slot.hf_name, ") is missing");
  LLAMAFT_REQUIRE(t->torch_shape() == slot.shape, f.path(), ": tensor '", name, "' has shape ",
                  shape_str(t->torch_shape()), " but the metadata implies ", shape_str(slot.shape), " for ",
                  slot.hf_name);
  LLAMAFT_REQUIRE(io::ggml_type_supported(t->type), f.path(), ": tensor '", name, "' is ",
                  io::ggml_type_name(t->type),
                  ", which convert cannot dequantize (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K)");
  return *t;
}

void check_gguf_tensors_mapped(const io::GgufFile& f, const ParamLayout& layout) {
  std::set<std::string> used;
  for (const auto& u : layout.units())
    for (const auto& s : u.tensors) used.insert(gguf_tensor_for(f, s).name);
  for (const auto& t : f.tensors())
    LLAMAFT_REQUIRE(used.count(t.name), f.path(), ": tensor '", t.name,
                    "' has no place in a Hugging Face Llama; refusing to drop it");
}

void gguf_slot_values(const io::GgufFile& f, const LlamaConfig& cfg, const TensorSlot& slot, float* out) {
  const io::GgufTensorInfo& t = gguf_tensor_for(f, slot);
  const bool is_q = slot.hf_name.find("self_attn.q_proj.weight") != std::string::npos;
  const bool is_k = slot.hf_name.find("self_attn.k_proj.weight") != std::string::npos;
  if (!is_q && !is_k) {
    f.dequantize(t, out);
    return;
  }
  // convert_hf_to_gguf.py's permute: rows (heads, 2, hd/2) -> (heads, hd/2,
  // 2), so GGUF row h*hd + 2j + i is HF row h*hd + i*hd/2 + j.
  const int64_t cols = t.ne[0], rows = t.ne[1], hd = cfg.head_dim, half = hd / 2;
  LLAMAFT_CHECK(rows % hd == 0, "q/k rows not whole heads");
  std::unique_ptr<float[]> tmp(new float[static_cast<size_t>(rows * cols)]);
  f.dequantize(t, tmp.get());
  // out(rows, cols) <- tmp(rows, cols) with rows regrouped per head
  for (int64_t h = 0; h < rows / hd; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(out + (h * hd + i * half + j) * cols, tmp.get() + (h * hd + 2 * j + i) * cols,
                    sizeof(float) * static_cast<size_t>(cols));
}

}  // namespace llamaft
