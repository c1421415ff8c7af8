#include "train/gguf_hook.hpp"

#include <filesystem>
#include <iostream>

#include "model/gguf_export.hpp"

namespace llamaft {

namespace {

GgufExportSource training_source(const TrainSettings& s, bool with_adapter) {
  GgufExportSource src;
  const bool lora = s.finetune.lora.enabled();
  src.model_dir = lora ? s.model_dir : s.out_dir + "/model";
  src.adapter_dir = lora && with_adapter ? s.out_dir + "/adapter" : "";
  src.tokenizer = s.tokenizer.empty() ? s.model_dir : s.tokenizer;
  std::filesystem::path run = std::filesystem::absolute(s.out_dir).lexically_normal();
  if (run.filename().empty()) run = run.parent_path();
  src.name = run.filename().string();
  return src;
}

}  // namespace

void check_training_gguf(const TrainSettings& s) {
  if (s.export_gguf == "none" || !s.export_model) return;
  GgufExportSource src = training_source(s, false);
  src.model_dir = s.model_dir;  // the export does not exist yet; the base has the same config
  check_gguf_exportable(src, parse_gguf_outtype(s.export_gguf));
}

void write_training_gguf(const TrainSettings& s) {
  if (s.export_gguf == "none" || !s.export_model) return;
  const std::string out = s.out_dir + "/model.gguf";
  const GgufExportSource src = training_source(s, true);
  const GgufExportReport r = export_gguf(src, parse_gguf_outtype(s.export_gguf), out, /*force=*/true);
  for (const auto& note : r.notes) std::cerr << "llamaft train: GGUF note: " << note << "\n";
  std::cerr << "llamaft train: wrote " << out << " (GGUF " << s.export_gguf << ", " << r.bytes << " bytes, "
            << r.seconds << " s)\n";
}

}  // namespace llamaft
