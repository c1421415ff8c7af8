// `llamaft export --format gguf --outtype f32|f16|bf16|q8_0|q4_0|q4_k_m
// --model DIR [--adapter DIR] [--tokenizer PATH] --output FILE.gguf
// [--name NAME] [--force]`: a Hugging Face Llama folder (init's, merge's,
// train's export, or a downloaded one), optionally with a LoRA adapter
// folded in, as one GGUF file for llama.cpp, Ollama and LM Studio. See
// model/gguf_export.hpp for what the file holds.
#include <iostream>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "model/gguf_export.hpp"

namespace llamaft {

int run_export(const Config& cfg) {
  apply_runtime_settings(cfg);
  const std::string format = cfg.get_string("export.format");
  LLAMAFT_REQUIRE(format == "gguf", "export: --format '", format, "' is not supported (supported: gguf)");
  const GgufOutType type = parse_gguf_outtype(cfg.get_string("export.outtype"));
  GgufExportSource src;
  src.model_dir = cfg.get_string("model.path");
  src.adapter_dir = cfg.get_string("model.adapter");
  src.tokenizer = cfg.get_string("model.tokenizer");
  src.name = cfg.get_string("export.name");
  const std::string out = cfg.get_string("export.output");
  const GgufExportReport r = export_gguf(src, type, out, cfg.get_bool("export.force"));
  for (const auto& note : r.notes) std::cerr << "export: note: " << note << "\n";
  std::string mix;
  for (const auto& [name, count] : r.tensor_types) mix += (mix.empty() ? "" : ", ") + std::to_string(count) + " " + name;
  std::cout << "export: " << src.model_dir << (src.adapter_dir.empty() ? "" : " + " + src.adapter_dir) << " -> " << out
            << " (GGUF " << gguf_outtype_name(type) << ", " << r.parameters << " parameters, tensors: " << mix << "; "
            << r.bytes << " bytes) in " << r.seconds << " s\n"
            << "export: tokenizer from " << r.tokenizer << "\n";
  return 0;
}

}  // namespace llamaft
