// `llamaft merge`: W <- W + scale * B A for every adapted module, written as
// HF safetensors (config.json + model.safetensors) that need no adapter, with
// the base's tokenizer files and generation_config.json beside them.
#include <iostream>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "core/util.hpp"
#include "model/export_files.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"

namespace llamaft {

int run_merge(const Config& cfg) {
  apply_runtime_settings(cfg);
  auto be = make_backend(cfg);
  const std::string base = cfg.get_string("model.path"), adapter = cfg.get_string("model.adapter");
  const std::string out = cfg.get_string("init.output");
  require_output_folder(out, cfg.get_bool("init.force"), "merge", {base, adapter});
  ResidentModel rm = load_resident_model(base, adapter, *be);
  const LlamaConfig& mc = rm.config;
  const ParamLayout& layout = rm.model->layout();
  ResidentParams& params = *rm.params;
  const LoraSpec& lora = layout.lora();
  const float scale = lora.scale();
  for (int l = 0; l < mc.num_hidden_layers; ++l) {
    const Unit& block = layout.units()[layout.block_unit(l)];
    const float* lw = params.params(layout.lora_unit(l));
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const LoraOffsets& o = layout.lora_offsets(t);
      if (o.a < 0) continue;
      const TensorSlot& w = block.slot(std::string(lora_target_name(t)) + ".weight");
      // W(out, in) += scale * B(out, r) @ A(r, in)
      be->gemm(false, false, static_cast<int>(o.out), static_cast<int>(o.in), lora.rank, scale, lw + o.b,
               lora.rank, lw + o.a, static_cast<int>(o.in), 1.f, params.mutable_params(layout.block_unit(l)) + w.offset,
               static_cast<int>(o.in));
    }
  }
  // The base's tokenizer files and generation_config.json go in after the
  // weights and before config.json: the merged folder stands on its own.
  std::vector<std::string> companions;
  save_hf_model(out, mc, layout, cfg.get_string("init.dtype") == "bfloat16", *be, params,
                parse_shard_size(cfg.get_string("init.max_shard_size"), "init.max_shard_size"),
                [&] { companions = write_companion_files(base, out, mc); });
  std::string list;
  for (const auto& n : companions) list += (list.empty() ? "" : ", ") + n;
  std::cout << "merge: wrote " << base << " + " << adapter << " (r=" << lora.rank << ", scale " << scale
            << ") to " << out << " with " << list << "\n";
  return 0;
}

}  // namespace llamaft
