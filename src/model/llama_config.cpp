#include "model/llama_config.hpp"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
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
  // Every size is a GEMM dimension (an int): larger values are a corrupt or
  // mistyped config, not a memory shortage.
  auto positive = [&](int64_t v, const char* key) {
    LLAMAFT_REQUIRE(v > 0, what, ": ", key, " must be positive, got ", v);
    LLAMAFT_REQUIRE(v <= INT32_MAX, what, ": ", key, " = ", v, " is larger than any Llama (at most 2^31 - 1 "
                    "here); a corrupt or mistyped config.json?");
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
    LLAMAFT_REQUIRE(rope_scaling.type == "llama3" || rope_scaling.type == "linear", what, ": rope_scaling type '",
                    rope_scaling.type, "' is not supported (supported: default, linear, llama3)");
    LLAMAFT_REQUIRE(rope_scaling.factor > 0, what, ": rope scaling factor must be positive");
    if (rope_scaling.type == "llama3")
      LLAMAFT_REQUIRE(rope_scaling.low_freq_factor > 0 && rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                          rope_scaling.original_max_position_embeddings > 0,
                      what, ": llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor "
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
  if (rope_scaling.type == "linear") {  // HF _compute_linear_scaling_rope_parameters: inv_freq /= factor
    for (float& f : inv) f /= static_cast<float>(rope_scaling.factor);
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
  // Read identically by transformers 4.4x (rope_theta, rope_scaling,
  // torch_dtype) and 5.x (rope_parameters, dtype; it gives rope_scaling
  // priority and takes rope_theta as the default inside it, which agree).
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
  json params = {{"rope_type", rope_scaling.type.empty() ? "default" : rope_scaling.type}, {"rope_theta", rope_theta}};
  if (rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    json rs = {{"rope_type", rope_scaling.type}, {"factor", rope_scaling.factor}};
    if (rope_scaling.type == "llama3") {
      rs["low_freq_factor"] = rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
    for (const auto& [k, v] : rs.items()) params[k] = v;
  }
  j["rope_parameters"] = params;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else j["eos_token_id"] = eos_token_ids;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["pretraining_tp"] = 1;
  j["initializer_range"] = 0.02;
  j["torch_dtype"] = torch_dtype;
  j["dtype"] = torch_dtype;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

namespace {

// Strict getters: a present key of the wrong type is an error, never a
// default (nlohmann would silently truncate 4096.5 to an integer).
bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

int64_t get_int(const json& j, const char* key, const std::string& what) {
  const json& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
      std::fabs(v.get<double>()) < 9e15)
    return static_cast<int64_t>(v.get<double>());
  LLAMAFT_FAIL(what, ": '", key, "' must be an integer, got ", v.dump());
}
int64_t get_int_or(const json& j, const char* key, int64_t fallback, const std::string& what) {
  return present(j, key) ? get_int(j, key, what) : fallback;
}
double get_num(const json& j, const char* key, const std::string& what) {
  const json& v = j[key];
  LLAMAFT_REQUIRE(v.is_number() && std::isfinite(v.get<double>()), what, ": '", key,
                  "' must be a finite number, got ", v.dump());
  return v.get<double>();
}
double get_num_or(const json& j, const char* key, double fallback, const std::string& what) {
  return present(j, key) ? get_num(j, key, what) : fallback;
}
bool get_bool_or(const json& j, const char* key, bool fallback, const std::string& what) {
  if (!present(j, key)) return fallback;
  LLAMAFT_REQUIRE(j[key].is_boolean(), what, ": '", key, "' must be true or false, got ", j[key].dump());
  return j[key].get<bool>();
}
std::string get_str_or(const json& j, const char* key, const std::string& fallback, const std::string& what) {
  if (!present(j, key)) return fallback;
  LLAMAFT_REQUIRE(j[key].is_string(), what, ": '", key, "' must be a string, got ", j[key].dump());
  return j[key].get<std::string>();
}

// Keys of a Llama config.json that do not change the math (PretrainedConfig's
// generic fields and Llama's non-numeric ones). Anything else is reported.
const std::set<std::string>& harmless_keys() {
  static const std::set<std::string> keys = {
      "_name_or_path", "architectures", "transformers_version", "initializer_range", "use_cache", "pad_token_id",
      "output_attentions", "output_hidden_states", "return_dict", "torchscript", "tokenizer_class", "id2label",
      "label2id", "problem_type", "prefix", "sep_token_id", "decoder_start_token_id", "is_encoder_decoder",
      "chunk_size_feed_forward", "tf_legacy_loss", "use_bfloat16", "finetuning_task", "task_specific_params",
      "max_length", "min_length", "do_sample", "temperature", "top_p", "top_k", "num_beams", "bad_words_ids",
      "forced_eos_token_id", "forced_bos_token_id", "num_return_sequences", "output_scores",
      "return_dict_in_generate", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
      "early_stopping", "pruned_heads", "add_cross_attention", "cross_attention_hidden_size", "is_decoder",
      "tie_encoder_decoder", "typical_p", "diversity_penalty", "num_beam_groups", "encoder_no_repeat_ngram_size",
      "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
      "epsilon_cutoff", "eta_cutoff", "output_router_logits"};
  return keys;
}

// The keys this reader interprets (each honoured exactly or refused).
const std::set<std::string>& interpreted_keys() {
  static const std::set<std::string> keys = {
      "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
      "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
      "rope_parameters", "partial_rotary_factor", "tie_word_embeddings", "bos_token_id", "eos_token_id",
      "hidden_act", "attention_bias", "mlp_bias", "attention_dropout", "pretraining_tp", "sliding_window",
      "use_sliding_window", "max_window_layers", "layer_types", "dtype", "torch_dtype", "quantization_config"};
  return keys;
}

// RoPE, from either form: transformers 4 (`rope_theta`, `rope_scaling`) or
// 5 (`rope_parameters`, possibly one dict per layer type). transformers 5
// gives `rope_scaling` priority and fills `rope_theta` from the top level.
void read_rope(const json& j, LlamaConfig& c, const std::string& what) {
  auto object_or_null = [&](const char* key) -> const json* {
    if (!present(j, key)) return nullptr;
    LLAMAFT_REQUIRE(j[key].is_object(), what, ": '", key, "' must be an object or null, got ", j[key].dump());
    return &j[key];
  };
  const json* scaling = object_or_null("rope_scaling");
  const json* parameters = object_or_null("rope_parameters");
  if (parameters && !parameters->empty()) {
    // transformers 5 nests one dict per layer type when layers differ.
    bool nested = true;
    for (const auto& [k, v] : parameters->items()) nested &= v.is_object() || v.is_null();
    if (nested) {
      for (const auto& [k, v] : parameters->items())
        LLAMAFT_REQUIRE(k == "full_attention" || v.is_null(), what, ": rope_parameters has an entry for layer type '",
                        k, "'; llamaft supports Llama's full_attention layers only");
      LLAMAFT_REQUIRE(parameters->contains("full_attention") && (*parameters)["full_attention"].is_object(), what,
                      ": rope_parameters is per layer type but has no 'full_attention' entry");
      parameters = &(*parameters)["full_attention"];
    }
  }
  const json* chosen = scaling ? scaling : parameters;
  if (scaling && parameters) {
    // Both forms: they must describe the same RoPE (each read alone below).
    json a = *scaling, b = *parameters;
    for (json* x : {&a, &b}) {
      if (x->contains("type") && !x->contains("rope_type")) (*x)["rope_type"] = (*x)["type"];
      x->erase("type");
      if (!x->contains("rope_theta") && present(j, "rope_theta")) (*x)["rope_theta"] = j["rope_theta"];
      if (!x->contains("rope_type")) (*x)["rope_type"] = "default";
    }
    LLAMAFT_REQUIRE(a == b, what, ": rope_scaling ", scaling->dump(), " and rope_parameters ", parameters->dump(),
                    " disagree; transformers 4 reads the first, 5 prefers it too, so keep one of them");
  }
  const json empty = json::object();
  const json& p = chosen ? *chosen : empty;
  double theta = get_num_or(j, "rope_theta", 10000.0, what);
  if (present(p, "rope_theta")) {
    const double inner = get_num(p, "rope_theta", what);
    LLAMAFT_REQUIRE(!present(j, "rope_theta") || inner == theta, what, ": rope_theta ", theta,
                    " and the rope parameters' rope_theta ", inner, " disagree");
    theta = inner;
  }
  c.rope_theta = theta;
  std::string type = present(p, "rope_type") ? get_str_or(p, "rope_type", "", what) : get_str_or(p, "type", "default", what);
  LLAMAFT_REQUIRE(!(present(p, "rope_type") && present(p, "type")) || get_str_or(p, "type", "", what) == type, what,
                  ": the rope parameters' 'type' and 'rope_type' disagree");
  std::set<std::string> allowed = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
  std::vector<const char*> required;
  if (type == "default") {
    c.rope_scaling = RopeScaling{};
  } else if (type == "linear") {
    required = {"factor"};
  } else if (type == "llama3") {
    required = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
  } else {
    LLAMAFT_FAIL(what, ": rope_type '", type, "' is not supported (supported: default, linear, llama3); "
                 "llamaft will not train with a different positional encoding than the model's");
  }
  for (const char* k : required) {
    allowed.insert(k);
    LLAMAFT_REQUIRE(present(p, k), what, ": rope_type '", type, "' needs '", k, "' in its parameters ",
                    p.dump(), " (transformers raises here too, or fills a value the other version does not)");
  }
  for (const auto& [k, v] : p.items())
    LLAMAFT_REQUIRE(allowed.count(k), what, ": rope parameter '", k, "' is not supported for rope_type '", type,
                    "' (it would change the positional encoding)");
  if (present(p, "partial_rotary_factor"))
    LLAMAFT_REQUIRE(get_num(p, "partial_rotary_factor", what) == 1.0, what,
                    ": partial_rotary_factor != 1 is not supported (Llama rotates the whole head)");
  if (type == "default") return;
  c.rope_scaling.type = type;
  c.rope_scaling.factor = get_num(p, "factor", what);
  if (type == "llama3") {
    c.rope_scaling.low_freq_factor = get_num(p, "low_freq_factor", what);
    c.rope_scaling.high_freq_factor = get_num(p, "high_freq_factor", what);
    c.rope_scaling.original_max_position_embeddings = get_int(p, "original_max_position_embeddings", what);
  }
}

// model_type llama, or (without one) LlamaForCausalLM among the architectures.
void check_llama_architecture(const json& j, const std::string& what) {
  if (present(j, "model_type")) {
    const auto mt = get_str_or(j, "model_type", "", what);
    LLAMAFT_REQUIRE(mt == "llama", what, ": model_type is '", mt, "', only 'llama' is supported");
  } else {
    bool llama = false;
    if (present(j, "architectures") && j["architectures"].is_array())
      for (const auto& a : j["architectures"]) llama |= a == "LlamaForCausalLM";
    LLAMAFT_REQUIRE(llama, what, ": no model_type and no LlamaForCausalLM in architectures; only Llama is supported");
  }
  if (present(j, "architectures")) {
    LLAMAFT_REQUIRE(j["architectures"].is_array(), what, ": 'architectures' must be a list");
    for (const auto& a : j["architectures"])
      LLAMAFT_REQUIRE(a == "LlamaForCausalLM" || a == "LlamaModel", what, ": architecture ", a.dump(),
                      " is not supported (only LlamaForCausalLM)");
  }
}

// eos_token_id: one id or a list of them.
void read_eos_token_ids(const json& j, LlamaConfig& c, const std::string& what) {
  if (!present(j, "eos_token_id")) return;
  const json& e = j["eos_token_id"];
  c.eos_token_ids.clear();
  if (e.is_array()) {
    for (size_t i = 0; i < e.size(); ++i) {
      LLAMAFT_REQUIRE(e[i].is_number_integer(), what, ": eos_token_id must hold integers, got ", e.dump());
      c.eos_token_ids.push_back(e[i].get<int64_t>());
    }
  } else {
    c.eos_token_ids = {get_int(j, "eos_token_id", what)};
  }
}

// Keys that would change the model's math away from Llama's: an activation
// other than silu, biases, attention dropout, partial rotary, sliding windows.
void refuse_unsupported_features(const json& j, const LlamaConfig& c, const std::string& what) {
  const std::string act = get_str_or(j, "hidden_act", "silu", what);
  LLAMAFT_REQUIRE(act == "silu", what, ": hidden_act '", act, "' is not supported (only silu)");
  for (const char* bias_key : {"attention_bias", "mlp_bias"})
    LLAMAFT_REQUIRE(!get_bool_or(j, bias_key, false, what), what, ": ", bias_key,
                    " = true is not supported (Llama has no biases)");
  LLAMAFT_REQUIRE(get_num_or(j, "attention_dropout", 0.0, what) == 0.0, what,
                  ": attention_dropout = ", j["attention_dropout"].dump(),
                  " is not supported (llamaft trains without attention dropout)");
  // pretraining_tp > 1 made transformers 4 split the same sums into slices;
  // transformers 5 ignores it. The math is the same either way.
  LLAMAFT_REQUIRE(get_int_or(j, "pretraining_tp", 1, what) >= 1, what, ": pretraining_tp must be at least 1");
  if (present(j, "partial_rotary_factor"))
    LLAMAFT_REQUIRE(get_num(j, "partial_rotary_factor", what) == 1.0, what,
                    ": partial_rotary_factor != 1 is not supported (Llama rotates the whole head)");
  LLAMAFT_REQUIRE(!present(j, "sliding_window"), what, ": sliding_window = ", j["sliding_window"].dump(),
                  " is not supported (Llama attends to every earlier position)");
  LLAMAFT_REQUIRE(!get_bool_or(j, "use_sliding_window", false, what), what,
                  ": use_sliding_window = true is not supported");
  if (present(j, "layer_types")) {
    LLAMAFT_REQUIRE(j["layer_types"].is_array() && static_cast<int64_t>(j["layer_types"].size()) == c.num_hidden_layers,
                    what, ": layer_types must list one type per layer (", c.num_hidden_layers, ")");
    for (const auto& t : j["layer_types"]) {
      LLAMAFT_REQUIRE(t == "full_attention", what, ": layer type ", t.dump(),
                      " is not supported (Llama layers are full_attention)");
    }
  }
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
  check_llama_architecture(j, what);
  LLAMAFT_REQUIRE(!present(j, "quantization_config"), what, ": the checkpoint is pre-quantized (quantization_config ",
                  j["quantization_config"].dump(), "); give the bf16/fp32 model: llamaft quantizes at load");
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"})
    LLAMAFT_REQUIRE(present(j, key), what, ": missing required key '", key, "'");
  LlamaConfig c;
  c.vocab_size = get_int(j, "vocab_size", what);
  c.hidden_size = get_int(j, "hidden_size", what);
  c.intermediate_size = get_int(j, "intermediate_size", what);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", what);
  c.num_attention_heads = get_int(j, "num_attention_heads", what);
  LLAMAFT_REQUIRE(c.num_attention_heads > 0, what, ": num_attention_heads must be positive");
  // transformers' defaults where a key is absent (LlamaConfig's own).
  c.num_key_value_heads = get_int_or(j, "num_key_value_heads", c.num_attention_heads, what);
  c.head_dim = get_int_or(j, "head_dim", c.hidden_size / c.num_attention_heads, what);
  c.max_position_embeddings = get_int_or(j, "max_position_embeddings", 2048, what);
  c.rms_norm_eps = get_num_or(j, "rms_norm_eps", 1e-6, what);
  c.tie_word_embeddings = get_bool_or(j, "tie_word_embeddings", false, what);
  c.bos_token_id = get_int_or(j, "bos_token_id", 1, what);
  const std::string tdt = get_str_or(j, "torch_dtype", "", what), dt = get_str_or(j, "dtype", "", what);
  for (const std::string& d : {tdt, dt})
    LLAMAFT_REQUIRE(d.empty() || d == "float32" || d == "bfloat16" || d == "float16", what, ": dtype '", d,
                    "' is not supported (float32, bfloat16 or float16 safetensors)");
  c.torch_dtype = !dt.empty() ? dt : !tdt.empty() ? tdt : "float32";
  read_eos_token_ids(j, c, what);
  refuse_unsupported_features(j, c, what);
  read_rope(j, c, what);
  for (const auto& [k, v] : j.items())
    if (!interpreted_keys().count(k) && !harmless_keys().count(k)) c.unused_keys.push_back(k);
  c.validate(what);
  return c;
}

std::string unused_keys_note(const LlamaConfig& c) {
  if (c.unused_keys.empty()) return "";
  std::string list;
  for (const auto& k : c.unused_keys) list += (list.empty() ? "" : ", ") + k;
  return "config.json keys llamaft does not read (not part of a Llama's math): " + list;
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
  return {"tiny", "tiny-tied", "small", "medium", "llama3.2-1b", "llama3.2-3b", "llama3-8b", "llama3-70b"};
}

LlamaConfig preset_config(const std::string& name) {
  if (name == "tiny" || name == "tiny-tied" || name == "small" || name == "medium") {
    // tiny: ~1M parameters with GQA, llama3 rope scaling and untied
    // embeddings, fast enough for every test. small: the stories15M shape.
    // medium: ~110M parameters (dim 768, 12 layers, 12 heads / 4 KV heads),
    // 440 MB in fp32: big enough that a test sees a file-sized memory cost.
    LlamaConfig c = llama3_shape(1024, 128, 384, 4, 4, 2, name == "tiny-tied", 32.0);
    if (name == "small") {
      c = llama3_shape(32000, 288, 768, 6, 6, 6, false, 32.0);
    }
    if (name == "medium") {
      c = llama3_shape(32000, 768, 2048, 12, 12, 4, false, 32.0);
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
