// The Llama architecture hyper-parameters, read from and written to Hugging
// Face's config.json, plus the named presets `llamaft init` and `plan` use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llamaft {

struct RopeScaling {
  std::string type;  // "" (default RoPE), "linear" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};
  std::string torch_dtype = "float32";
  // config.json keys that are neither interpreted nor known to be harmless;
  // the math does not read them, and the commands list them once.
  std::vector<std::string> unused_keys;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  int64_t num_parameters() const;

  // Validates internal consistency; `what` names the source in messages.
  void validate(const std::string& what) const;
  // RoPE inverse frequencies (head_dim/2), with llama3 scaling as HF computes
  // them (_compute_llama3_parameters), in fp32.
  std::vector<float> rope_inv_freq() const;

  // An HF config.json that transformers 4.4x and 5.x read identically.
  std::string to_json() const;
  static LlamaConfig from_json_text(const std::string& text, const std::string& what);
  static LlamaConfig from_file(const std::string& path);
};

// "config.json keys llamaft does not read (they do not change a Llama's
// math): a, b" for banners; "" when there are none.
std::string unused_keys_note(const LlamaConfig& c);

// Named shapes: tiny, tiny-tied (tests), llama3.2-1b, llama3.2-3b, llama3-8b,
// llama3-70b. Unknown names are an error that lists the valid ones.
LlamaConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace llamaft
