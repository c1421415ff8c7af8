#include "model/lora.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

LoraSpec lora_spec_from_config(const Config& cfg, const std::string& method) {
  LoraSpec s;
  if (method == "full") return s;
  LLAMAFT_REQUIRE(method == "lora" || method == "qlora", "finetune.method = ", method, " (full|lora|qlora)");
  s.rank = static_cast<int>(cfg.get_int("lora.r"));
  s.alpha = cfg.get_float("lora.alpha");
  s.rslora = cfg.get_bool("lora.rslora");
  s.dropout = cfg.get_float("lora.dropout");
  LLAMAFT_REQUIRE(s.dropout < 1.0, "lora.dropout = ", s.dropout, " must be below 1");
  std::stringstream ss(cfg.get_string("lora.targets"));
  for (std::string t; std::getline(ss, t, ',');) {
    t.erase(0, t.find_first_not_of(" \t"));
    t.erase(t.find_last_not_of(" \t") + 1);
    if (t.empty()) continue;
    if (t == "all") {
      for (bool& b : s.targets) b = true;
      continue;
    }
    bool found = false;
    for (int i = 0; i < kNumLoraTargets; ++i)
      if (t == lora_target_name(i)) s.targets[i] = found = true;
    LLAMAFT_REQUIRE(found, "lora.targets: unknown module '", t,
                    "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all)");
  }
  bool any = false;
  for (bool b : s.targets) any |= b;
  LLAMAFT_REQUIRE(any, "lora.targets selects no module");
  return s;
}

std::string adapter_config_json(const LoraSpec& spec, const std::string& base_model_path) {
  nlohmann::ordered_json targets = nlohmann::json::array();
  for (int i = 0; i < kNumLoraTargets; ++i)
    if (spec.targets[i]) targets.push_back(lora_target_name(i));
  nlohmann::ordered_json j = {
      {"peft_type", "LORA"},          {"task_type", "CAUSAL_LM"},      {"base_model_name_or_path", base_model_path},
      {"r", spec.rank},               {"lora_alpha", spec.alpha},      {"lora_dropout", spec.dropout},
      {"target_modules", targets},    {"bias", "none"},                {"use_rslora", spec.rslora},
      {"fan_in_fan_out", false},      {"inference_mode", true},        {"init_lora_weights", true},
      {"modules_to_save", nullptr},   {"revision", nullptr},           {"layers_to_transform", nullptr},
      {"use_dora", false}};  // only LoraConfig's own keys: PEFT warns on any other
  return j.dump(2) + "\n";
}

quant::Kind base_quant_from_config(const Config& cfg, const std::string& method, bool bf16_params) {
  const quant::Kind q = quant::parse_kind(cfg.get_string("quant.base"));
  const bool dq = cfg.get_bool("quant.double_quant");
  if (method == "qlora") {
    LLAMAFT_REQUIRE(q == quant::Kind::kNone || q == quant::Kind::kNf4, "finetune.method = qlora quantizes the base to "
                    "nf4; quant.base = ", quant::kind_name(q), " contradicts it (use method = lora with quant.base = int8)");
    return dq ? quant::Kind::kNf4 : quant::Kind::kNf4Plain;
  }
  if (q == quant::Kind::kNf4 && !dq) return quant::Kind::kNf4Plain;
  LLAMAFT_REQUIRE(q == quant::Kind::kNone || method != "full", "quant.base = ", quant::kind_name(q),
                  " needs a frozen base: set finetune.method = lora or qlora");
  // LoRA keeps the frozen base in the compute dtype: bf16 when GEMMs are bf16.
  if (q == quant::Kind::kNone && method == "lora" && bf16_params)
    return quant::Kind::kBf16;
  return q;
}

quant::Kind eval_quant_from_config(const Config& cfg) {
  const quant::Kind q = quant::parse_kind(cfg.get_string("quant.base"));
  return q == quant::Kind::kNf4 && !cfg.get_bool("quant.double_quant") ? quant::Kind::kNf4Plain : q;
}

LoraSpec read_adapter_config(const std::string& adapter_dir) {
  const std::string path = adapter_dir + "/adapter_config.json";
  std::ifstream in(path);
  LLAMAFT_REQUIRE(in.good(), "adapter: cannot open '", path, "' (expected a PEFT adapter folder)");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  LLAMAFT_REQUIRE(j.is_object() && j.contains("peft_type") && j["peft_type"] == "LORA", path,
                  ": not a PEFT LoRA adapter config (a JSON object with \"peft_type\": \"LORA\")");
  // Every field of PEFT's LoraConfig that changes the adapted model is
  // honoured or refused; r and lora_alpha are required (PEFT always writes
  // them, and its defaults are not ours to guess).
  for (const char* key : {"r", "lora_alpha"})
    LLAMAFT_REQUIRE(j.contains(key) && j[key].is_number(), path, ": '", key, "' must be a number");
  auto off = [&](const char* key) {
    if (!j.contains(key) || j[key].is_null()) return true;
    const auto& v = j[key];
    return (v.is_boolean() && !v.get<bool>()) || (v.is_object() && v.empty()) || (v.is_array() && v.empty());
  };
  for (const char* key : {"use_dora", "fan_in_fan_out", "layers_to_transform", "layers_pattern", "rank_pattern",
                          "alpha_pattern", "modules_to_save", "lora_bias", "exclude_modules", "layer_replication",
                          "trainable_token_indices", "use_qalora", "megatron_config", "loftq_config"})
    LLAMAFT_REQUIRE(off(key), path,
                    ": '", key, "' = ", j[key].dump(), " is not supported (llamaft adapts every layer's target "
                    "modules with one r and alpha, LoRA only)");
  LLAMAFT_REQUIRE(!j.contains("bias") || j["bias"] == "none", path, ": bias = ", j.contains("bias") ? j["bias"].dump() : "",
                  " is not supported (only \"none\")");
  LoraSpec s;
  const bool int_rank = j["r"].is_number_integer() && j["r"].get<int64_t>() > 0 && j["r"].get<int64_t>() <= (1 << 20);
  s.rank = int_rank ? j["r"].get<int>() : 0;
  s.alpha = j["lora_alpha"].get<double>();
  LLAMAFT_REQUIRE(!j.contains("use_rslora") || j["use_rslora"].is_boolean(), path, ": use_rslora must be true or false");
  s.rslora = j.value("use_rslora", false);
  s.dropout = j.contains("lora_dropout") && j["lora_dropout"].is_number() ? j["lora_dropout"].get<double>() : 0.0;
  LLAMAFT_REQUIRE(s.rank > 0, path, ": r must be a positive integer (at most 2^20), got ", j["r"].dump());
  LLAMAFT_REQUIRE(j.contains("target_modules") && j["target_modules"].is_array(), path,
                  ": target_modules must be a list of module names");
  for (const auto& t : j["target_modules"]) {
    LLAMAFT_REQUIRE(t.is_string(), path, ": target_modules must hold module names, got ", t.dump());
    bool found = false;
    for (int i = 0; i < kNumLoraTargets; ++i)
      if (t.get<std::string>() == lora_target_name(i)) s.targets[i] = found = true;
    LLAMAFT_REQUIRE(found, path, ": unsupported target module ", t.dump());
  }
  return s;
}

}  // namespace llamaft
