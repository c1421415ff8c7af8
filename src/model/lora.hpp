// LoRA settings from the config ([lora] r, alpha, targets, rslora; [quant]
// for the frozen base) and PEFT's adapter_config.json, in and out. The method
// (finetune.method) is parsed by train/settings.hpp's FinetuneSettings and
// passed in. Adapters are saved
// with PEFT's key names (base_model.model.model.layers.N.self_attn.q_proj.
// lora_A.weight ...) so PeftModel.from_pretrained loads them.
#pragma once

#include <string>

#include "config/config.hpp"
#include "model/param_layout.hpp"
#include "quant/quant.hpp"

namespace llamaft {

// The LoRA spec (lora.*) for finetune.method = `method` (rank 0 for full).
LoraSpec lora_spec_from_config(const Config& cfg, const std::string& method);
// How `method` stores the frozen base (quant.*): none, int8 (lora + quant.base
// = int8), nf4 (qlora), or bf16 for lora when bf16_params (train.param_dtype).
quant::Kind base_quant_from_config(const Config& cfg, const std::string& method, bool bf16_params);
// eval / generate --quant: quant.base, with quant.double_quant for nf4.
quant::Kind eval_quant_from_config(const Config& cfg);
// PEFT's adapter_config.json for a spec.
std::string adapter_config_json(const LoraSpec& spec, const std::string& base_model_path);
// Reads DIR/adapter_config.json (PEFT format, LoRA only).
LoraSpec read_adapter_config(const std::string& adapter_dir);

}  // namespace llamaft
