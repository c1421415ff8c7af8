// config.json and adapter_config.json as users' files hold them: the
// transformers 5 form (rope_parameters) and the transformers 4 form
// (rope_theta, rope_scaling) read to the same RoPE, every field that changes
// the math is honoured or refused (never defaulted), and what llamaft writes
// reads back identically and carries only keys PEFT's LoraConfig knows.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include <unistd.h>

#include "core/error.hpp"
#include "model/llama_config.hpp"
#include "model/lora.hpp"

namespace llamaft {
namespace {

using nlohmann::json;

json fixture(const std::string& name) {
  std::ifstream in(std::string(LLAMAFT_SOURCE_DIR) + "/tests/fixtures/hf_configs/" + name + ".json");
  EXPECT_TRUE(in.good()) << name;
  return json::parse(in);
}

LlamaConfig parse(const json& j) { return LlamaConfig::from_json_text(j.dump(), "config.json"); }

std::string refusal(const json& j) {
  try {
    parse(j);
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitUserError);
    return e.what();
  }
  return "<accepted>";
}

// HF's inv_freq in fp32: 1 / theta^(2i/d), then the scaling's own rule.
std::vector<float> default_inv_freq(double theta, int64_t head_dim) {
  std::vector<float> inv(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i)
    inv[i] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
  return inv;
}

TEST(HfConfig, Transformers5Llama31ReadsLlama3Rope) {
  const LlamaConfig c = parse(fixture("llama3.1_llama3_rope"));
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.torch_dtype, "bfloat16");  // transformers 5 writes "dtype"
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.unused_keys.empty()) << unused_keys_note(c);
  // The scaling really applies: the lowest frequencies are divided by 8.
  const auto plain = default_inv_freq(500000.0, c.head_dim), scaled = c.rope_inv_freq();
  EXPECT_EQ(scaled.back(), plain.back() / 8.0f);
  EXPECT_EQ(scaled.front(), plain.front());
}

TEST(HfConfig, Transformers5Llama32TiedAndLlama2Default) {
  const LlamaConfig tied = parse(fixture("llama3.2_tied"));
  EXPECT_TRUE(tied.tie_word_embeddings);
  EXPECT_EQ(tied.rope_scaling.factor, 32.0);
  const LlamaConfig l2 = parse(fixture("llama2_default_rope"));
  EXPECT_EQ(l2.rope_theta, 10000.0);
  EXPECT_TRUE(l2.rope_scaling.type.empty());
  EXPECT_EQ(l2.rope_inv_freq(), default_inv_freq(10000.0, l2.head_dim));
}

TEST(HfConfig, Transformers4FormReadsTheSameRope) {
  json v5 = fixture("llama3.1_llama3_rope");
  json v4 = v5;
  json rp = v4["rope_parameters"];
  v4.erase("rope_parameters");
  v4.erase("dtype");
  v4["torch_dtype"] = "bfloat16";
  v4["rope_theta"] = rp["rope_theta"];
  rp.erase("rope_theta");
  v4["rope_scaling"] = rp;
  const LlamaConfig a = parse(v5), b = parse(v4);
  EXPECT_EQ(a.rope_inv_freq(), b.rope_inv_freq());
  EXPECT_EQ(a.to_json(), b.to_json());
  // The old spelling "type" is read as transformers reads it.
  v4["rope_scaling"].erase("rope_type");
  v4["rope_scaling"]["type"] = "llama3";
  EXPECT_EQ(parse(v4).rope_inv_freq(), a.rope_inv_freq());
}

TEST(HfConfig, PerLayerTypeRopeParameters) {
  json j = fixture("llama3.1_llama3_rope");
  j["rope_parameters"] = {{"full_attention", j["rope_parameters"]}};
  j["layer_types"] = {"full_attention", "full_attention"};
  EXPECT_EQ(parse(j).rope_inv_freq(), parse(fixture("llama3.1_llama3_rope")).rope_inv_freq());
  j["rope_parameters"]["sliding_attention"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  EXPECT_NE(refusal(j).find("layer type 'sliding_attention'"), std::string::npos) << refusal(j);
}

TEST(HfConfig, LinearRopeIsExact) {
  json j = fixture("llama2_default_rope");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  const LlamaConfig c = parse(j);
  auto want = default_inv_freq(10000.0, c.head_dim);
  for (float& f : want) f /= 4.0f;  // _compute_linear_scaling_rope_parameters
  EXPECT_EQ(c.rope_inv_freq(), want);
}

TEST(HfConfig, WrittenConfigReadsBackIdenticallyInBothForms) {
  for (const char* name : {"llama3.1_llama3_rope", "llama3.2_tied", "llama2_default_rope"}) {
    const LlamaConfig c = parse(fixture(name));
    const json out = json::parse(c.to_json());
    // Both forms, agreeing: transformers 4 reads rope_theta/rope_scaling,
    // 5 reads rope_scaling first and rope_parameters otherwise.
    ASSERT_TRUE(out.contains("rope_parameters")) << name;
    EXPECT_EQ(out["rope_parameters"]["rope_theta"], out["rope_theta"]) << name;
    EXPECT_EQ(out["dtype"], out["torch_dtype"]) << name;
    const LlamaConfig back = parse(out);
    EXPECT_EQ(back.to_json(), c.to_json()) << name;
    EXPECT_EQ(back.rope_inv_freq(), c.rope_inv_freq()) << name;
    json only5 = out;
    only5.erase("rope_scaling");
    only5.erase("rope_theta");
    EXPECT_EQ(parse(only5).rope_inv_freq(), c.rope_inv_freq()) << name;
    json only4 = out;
    only4.erase("rope_parameters");
    EXPECT_EQ(parse(only4).rope_inv_freq(), c.rope_inv_freq()) << name;
  }
}

TEST(HfConfig, UnknownKeysAreListedNotFatal) {
  json j = fixture("llama2_default_rope");
  j["my_custom_note"] = "hello";
  const LlamaConfig c = parse(j);
  ASSERT_EQ(c.unused_keys.size(), 1u);
  EXPECT_NE(unused_keys_note(c).find("my_custom_note"), std::string::npos);
}

struct Refusal {
  const char* what;
  std::function<void(json&)> edit;
  const char* message;
};

TEST(HfConfig, EveryUnsupportedFieldIsRefused) {
  const std::vector<Refusal> cases = {
      {"yarn in rope_parameters", [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; }, "rope_type 'yarn'"},
      {"dynamic", [](json& j) { j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}}; },
       "rope_type 'dynamic'"},
      {"longrope in rope_scaling",
       [](json& j) {
         j.erase("rope_parameters");
         j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
       },
       "rope_type 'longrope'"},
      {"llama3 with only factor",
       [](json& j) {
         j.erase("rope_parameters");
         j["rope_theta"] = 500000.0;
         j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
       },
       "needs 'low_freq_factor'"},
      {"llama3 without original_max_position_embeddings",
       [](json& j) { j["rope_parameters"].erase("original_max_position_embeddings"); },
       "needs 'original_max_position_embeddings'"},
      {"unknown rope parameter", [](json& j) { j["rope_parameters"]["attention_factor"] = 0.5; },
       "rope parameter 'attention_factor'"},
      {"forms that disagree",
       [](json& j) {
         j["rope_theta"] = 500000.0;
         j["rope_scaling"] = j["rope_parameters"];
         j["rope_scaling"]["factor"] = 16.0;
       },
       "disagree"},
      {"top-level theta against the parameters'", [](json& j) { j["rope_theta"] = 10000.0; }, "disagree"},
      {"hidden_act", [](json& j) { j["hidden_act"] = "gelu"; }, "hidden_act 'gelu'"},
      {"attention_bias", [](json& j) { j["attention_bias"] = true; }, "attention_bias = true"},
      {"mlp_bias", [](json& j) { j["mlp_bias"] = true; }, "mlp_bias = true"},
      {"head_dim not an integer", [](json& j) { j["head_dim"] = 16.5; }, "'head_dim' must be an integer"},
      {"head_dim odd", [](json& j) { j["head_dim"] = 15; }, "head_dim must be even"},
      {"vocab_size fractional", [](json& j) { j["vocab_size"] = 256.5; }, "'vocab_size' must be an integer"},
      {"pretraining_tp", [](json& j) { j["pretraining_tp"] = 0; }, "pretraining_tp"},
      {"partial_rotary_factor", [](json& j) { j["partial_rotary_factor"] = 0.5; }, "partial_rotary_factor"},
      {"partial_rotary_factor inside rope", [](json& j) { j["rope_parameters"]["partial_rotary_factor"] = 0.5; },
       "partial_rotary_factor"},
      {"rms_norm_eps as text", [](json& j) { j["rms_norm_eps"] = "1e-5"; }, "'rms_norm_eps' must be a finite number"},
      {"rms_norm_eps negative", [](json& j) { j["rms_norm_eps"] = -1e-5; }, "rms_norm_eps must be positive"},
      {"tie_word_embeddings as text", [](json& j) { j["tie_word_embeddings"] = "yes"; },
       "'tie_word_embeddings' must be true or false"},
      {"model_type", [](json& j) { j["model_type"] = "mistral"; }, "model_type is 'mistral'"},
      {"architecture", [](json& j) { j["architectures"] = {"LlamaForSequenceClassification"}; },
       "LlamaForSequenceClassification"},
      {"sliding_window", [](json& j) { j["sliding_window"] = 4096; }, "sliding_window"},
      {"layer_types", [](json& j) { j["layer_types"] = {"full_attention", "sliding_attention"}; },
       "sliding_attention"},
      {"dtype", [](json& j) { j["dtype"] = "float8_e4m3fn"; }, "dtype 'float8_e4m3fn'"},
      {"torch_dtype", [](json& j) { j["torch_dtype"] = "int8"; }, "dtype 'int8'"},
      {"attention_dropout", [](json& j) { j["attention_dropout"] = 0.1; }, "attention_dropout"},
      {"pre-quantized", [](json& j) { j["quantization_config"] = {{"quant_method", "bitsandbytes"}}; },
       "pre-quantized"},
  };
  for (const auto& c : cases) {
    json j = fixture("llama3.1_llama3_rope");
    ASSERT_EQ(refusal(j), "<accepted>");
    c.edit(j);
    const std::string msg = refusal(j);
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.what << ": " << msg;
  }
}

// ---- adapter_config.json ---------------------------------------------------

std::string adapter_dir_with(const json& j) {
  // One folder per process as well: ctest -j runs each test as its own
  // process, and two of them writing adapter_cfg_0 at once read each other's.
  static int n = 0;
  const std::string dir =
      ::testing::TempDir() + "/adapter_cfg_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/adapter_config.json") << j.dump();
  return dir;
}

TEST(AdapterConfig, WritesOnlyLoraConfigKeys) {
  LoraSpec spec;
  spec.rank = 4;
  spec.alpha = 8;
  for (bool& t : spec.targets) t = true;
  const json j = json::parse(adapter_config_json(spec, "/base"));
  // PEFT 0.21's LoraConfig fields among those we write; anything else makes
  // PEFT warn "Unexpected keyword arguments" on every load.
  const std::set<std::string> lora_config_fields = {
      "peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules",
      "bias", "use_rslora", "fan_in_fan_out", "inference_mode", "init_lora_weights", "modules_to_save", "revision",
      "layers_to_transform", "use_dora"};
  for (const auto& [k, v] : j.items()) EXPECT_TRUE(lora_config_fields.count(k)) << "unexpected key " << k;
  const LoraSpec back = read_adapter_config(adapter_dir_with(j));
  EXPECT_EQ(back.rank, 4);
  EXPECT_EQ(back.alpha, 8.0);
}

TEST(AdapterConfig, FieldsThatChangeTheModelAreRefused) {
  LoraSpec spec;
  spec.rank = 4;
  spec.alpha = 8;
  spec.targets[0] = true;
  const json base = json::parse(adapter_config_json(spec, "/base"));
  const std::vector<std::pair<std::string, json>> cases = {
      {"use_dora", true},
      {"fan_in_fan_out", true},
      {"layers_to_transform", json::array({0})},
      {"rank_pattern", {{"q_proj", 8}}},
      {"alpha_pattern", {{"q_proj", 8}}},
      {"modules_to_save", json::array({"lm_head"})},
      {"bias", "all"},
      {"lora_bias", true},
  };
  for (const auto& [key, value] : cases) {
    json j = base;
    j[key] = value;
    try {
      read_adapter_config(adapter_dir_with(j));
      ADD_FAILURE() << key << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
  for (const char* key : {"r", "lora_alpha"}) {  // PEFT's defaults are not ours to guess
    json j = base;
    j.erase(key);
    EXPECT_THROW(read_adapter_config(adapter_dir_with(j)), Error) << key;
  }
}

}  // namespace
}  // namespace llamaft
