#include "model/llama_config.hpp"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

using nlohmann::json;

int64_t LlamaConfig::num_parameters() const {
  const int64_t d = hidden_size;
  const int64_t block = 2 * d + d * q_dim() * 2 + 2 * d * kv_dim() + 3 * d * intermediate_size;
  int64_t n = vocab_size * d + num_hidden_layers * block + d;
  if (!tie_word_embeddings) n += vocab_size * d;
  return n;
}

void LlamaConfig::validate(const std::string& what) const {
  auto positive = [&](int64_t v, const char* key) {
    LLAMAFT_REQUIRE(v > 0, what, ": ", key, " must be positive, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  LLAMAFT_REQUIRE(num_attention_heads % num_key_value_heads == 0, what,
                  ": num_attention_heads (", num_attention_heads,
                  ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")");
  LLAMAFT_REQUIRE(head_dim % 2 == 0, what, ": head_dim must be even for RoPE, got ", head_dim);
  LLAMAFT_REQUIRE(rms_norm_eps > 0, what, ": rms_norm_eps must be positive");
  LLAMAFT_REQUIRE(rope_theta > 0, what, ": rope_theta must be positive");
  LLAMAFT_REQUIRE(vocab_size < (int64_t(1) << 31), what, ": vocab_size too large");
  if (!rope_scaling.type.empty()) {
    LLAMAFT_REQUIRE(rope_scaling.type == "llama3", what, ": rope_scaling type '", rope_scaling.type,
                    "' is not supported (supported: llama3)");
    LLAMAFT_REQUIRE(rope_scaling.factor > 0 && rope_scaling.low_freq_factor > 0 &&
                        rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                        rope_scaling.original_max_position_embeddings > 0,
                    what, ": rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor "
                          "and original_max_position_embeddings > 0");
  }
}

std::vector<float> LlamaConfig::rope_inv_freq() const {
  const int half = static_cast<int>(head_dim / 2);
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in fp32
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(rope_theta), exponent);
  }
  if (rope_scaling.type == "llama3") {
    const float factor = static_cast<float>(rope_scaling.factor);
    const float low = static_cast<float>(rope_scaling.low_freq_factor);
    const float high = static_cast<float>(rope_scaling.high_freq_factor);
    const float old_len = static_cast<float>(rope_scaling.original_max_position_embeddings);
    const float low_wavelen = old_len / low, high_wavelen = old_len / high;
    const float pi = 3.14159265358979323846f;
    for (int i = 0; i < half; ++i) {
      const float wavelen = 2.f * pi / inv[i];
      if (wavelen > low_wavelen) {
        inv[i] = inv[i] / factor;
      } else if (wavelen >= high_wavelen) {  // medium band: smooth interpolation
        const float smooth = (old_len / wavelen - low) / (high - low);
        inv[i] = (1.f - smooth) * inv[i] / factor + smooth * inv[i];
      }
    }
  }
  return inv;
}

std::string LlamaConfig::to_json() const {
  json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {{"rope_type", rope_scaling.type},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings",
                          rope_scaling.original_max_position_embeddings}};
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else j["eos_token_id"] = eos_token_ids;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["initializer_range"] = 0.02;
  j["torch_dtype"] = torch_dtype;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

namespace {
template <typename T>
T get_or(const json& j, const char* key, T fallback, const std::string& what) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const std::exception&) {
    LLAMAFT_FAIL(what, ": key '", key, "' has the wrong type (", j[key].dump(), ")");
  }
}
template <typename T>
T get_req(const json& j, const char* key, const std::string& what) {
  LLAMAFT_REQUIRE(j.contains(key) && !j[key].is_null(), what, ": missing required key '", key, "'");
  return get_or<T>(j, key, T{}, what);
}
}  // namespace

LlamaConfig LlamaConfig::from_json_text(const std::string& text, const std::string& what) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    LLAMAFT_FAIL(what, ": not valid JSON (", e.what(), ")");
  }
  LLAMAFT_REQUIRE(j.is_object(), what, ": expected a JSON object");
  if (j.contains("model_type") && j["model_type"].is_string()) {
    const auto mt = j["model_type"].get<std::string>();
    LLAMAFT_REQUIRE(mt == "llama", what, ": model_type is '", mt, "', only 'llama' is supported");
  }
  LlamaConfig c;
  c.vocab_size = get_req<int64_t>(j, "vocab_size", what);
  c.hidden_size = get_req<int64_t>(j, "hidden_size", what);
  c.intermediate_size = get_req<int64_t>(j, "intermediate_size", what);
  c.num_hidden_layers = get_req<int64_t>(j, "num_hidden_layers", what);
  c.num_attention_heads = get_req<int64_t>(j, "num_attention_heads", what);
  c.num_key_value_heads = get_or<int64_t>(j, "num_key_value_heads", c.num_attention_heads, what);
  LLAMAFT_REQUIRE(c.num_attention_heads > 0, what, ": num_attention_heads must be positive");
  c.head_dim = get_or<int64_t>(j, "head_dim", c.hidden_size / c.num_attention_heads, what);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048, what);
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, what);
  c.rope_theta = get_or<double>(j, "rope_theta", 10000.0, what);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, what);
  c.bos_token_id = get_or<int64_t>(j, "bos_token_id", 1, what);
  c.torch_dtype = get_or<std::string>(j, "torch_dtype", "float32", what);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    if (j["eos_token_id"].is_array()) c.eos_token_ids = get_or<std::vector<int64_t>>(j, "eos_token_id", {}, what);
    else c.eos_token_ids = {get_or<int64_t>(j, "eos_token_id", 2, what)};
  }
  if (j.contains("hidden_act") && j["hidden_act"].is_string()) {
    const auto act = j["hidden_act"].get<std::string>();
    LLAMAFT_REQUIRE(act == "silu", what, ": hidden_act '", act, "' is not supported (only silu)");
  }
  for (const char* bias_key : {"attention_bias", "mlp_bias"})
    LLAMAFT_REQUIRE(!get_or<bool>(j, bias_key, false, what), what, ": ", bias_key,
                    " = true is not supported (Llama has no biases)");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    LLAMAFT_REQUIRE(rs.is_object(), what, ": rope_scaling must be an object or null");
    std::string type = rs.contains("rope_type") ? get_or<std::string>(rs, "rope_type", "", what)
                                                : get_or<std::string>(rs, "type", "", what);
    if (type != "default") {
      c.rope_scaling.type = type;
      c.rope_scaling.factor = get_or<double>(rs, "factor", 1.0, what);
      c.rope_scaling.low_freq_factor = get_or<double>(rs, "low_freq_factor", 1.0, what);
      c.rope_scaling.high_freq_factor = get_or<double>(rs, "high_freq_factor", 4.0, what);
      c.rope_scaling.original_max_position_embeddings =
          get_or<int64_t>(rs, "original_max_position_embeddings", 8192, what);
    }
  }
  c.validate(what);
  return c;
}

LlamaConfig LlamaConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  LLAMAFT_REQUIRE(in.good(), "cannot open model config '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json_text(ss.str(), path);
}

namespace {
LlamaConfig llama3_shape(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
                         int64_t kv_heads, bool tied, double factor) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling = {"llama3", factor, 1.0, 4.0, 8192};
  c.tie_word_embeddings = tied;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  c.torch_dtype = "bfloat16";
  return c;
}
}  // namespace

std::vector<std::string> preset_names() {
  return {"tiny", "tiny-tied", "small", "llama3.2-1b", "llama3.2-3b", "llama3-8b", "llama3-70b"};
}

LlamaConfig preset_config(const std::string& name) {
  if (name == "tiny" || name == "tiny-tied" || name == "small") {
    // tiny: ~1M parameters with GQA, llama3 rope scaling and untied
    // embeddings, fast enough for every test. small: the stories15M shape.
    LlamaConfig c = llama3_shape(1024, 128, 384, 4, 4, 2, name == "tiny-tied", 32.0);
    if (name == "small") {
      c = llama3_shape(32000, 288, 768, 6, 6, 6, false, 32.0);
    }
    c.max_position_embeddings = 4096;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    c.torch_dtype = "float32";
    return c;
  }
  if (name == "llama3.2-1b") return llama3_shape(128256, 2048, 8192, 16, 32, 8, true, 32.0);
  if (name == "llama3.2-3b") return llama3_shape(128256, 3072, 8192, 28, 24, 8, true, 32.0);
  if (name == "llama3-8b") {
    LlamaConfig c = llama3_shape(128256, 4096, 14336, 32, 32, 8, false, 8.0);
    return c;
  }
  if (name == "llama3-70b") return llama3_shape(128256, 8192, 28672, 80, 64, 8, false, 8.0);
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  LLAMAFT_FAIL("unknown preset '", name, "'; valid presets: ", list);
}

}  // namespace llamaft
