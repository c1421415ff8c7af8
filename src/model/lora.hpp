// LoRA settings from the config ([finetune] method, [lora] r, alpha, targets,
// rslora) and PEFT's adapter_config.json, in and out. Adapters are saved
// with PEFT's key names (base_model.model.model.layers.N.self_attn.q_proj.
// lora_A.weight ...) so PeftModel.from_pretrained loads them.
#pragma once

#include <string>

#include "config/config.hpp"
#include "model/param_layout.hpp"
#include "quant/quant.hpp"

namespace llamaft {

// The LoRA spec a config asks for (rank 0 when finetune.method = full).
LoraSpec lora_spec_from_config(const Config& cfg);
// How the frozen base is stored: none, int8 (lora + quant.base = int8) or nf4 (qlora).
quant::Kind base_quant_from_config(const Config& cfg);
// eval / generate --quant: quant.base, with quant.double_quant for nf4.
quant::Kind eval_quant_from_config(const Config& cfg);
// PEFT's adapter_config.json for a spec.
std::string adapter_config_json(const LoraSpec& spec, const std::string& base_model_path);
// Reads DIR/adapter_config.json (PEFT format, LoRA only).
LoraSpec read_adapter_config(const std::string& adapter_dir);

}  // namespace llamaft
