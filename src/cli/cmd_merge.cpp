// `llamaft merge`: W <- W + scale * B A for every adapted module, written as
// HF safetensors (config.json + model.safetensors) that need no adapter.
#include <iostream>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"

namespace llamaft {

int run_merge(const Config& cfg) {
  apply_runtime_settings(cfg);
  auto be = make_backend(cfg);
  const std::string base = cfg.get_string("model.path"), adapter = cfg.get_string("model.adapter");
  const LlamaConfig mc = read_model_config(base);
  ModelOptions mopts;
  mopts.lora = read_adapter_config(adapter);
  LlamaModel model(mc, *be, mopts);
  const ParamLayout& layout = model.layout();
  ResidentParams params(*be, layout);
  load_hf_weights(base, layout, *be, params);
  load_adapter(adapter, layout, *be, params);
  const float scale = mopts.lora.scale();
  for (int l = 0; l < mc.num_hidden_layers; ++l) {
    const Unit& block = layout.units()[layout.block_unit(l)];
    const float* lw = params.params(layout.lora_unit(l));
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const LoraOffsets& o = layout.lora_offsets(t);
      if (o.a < 0) continue;
      const TensorSlot& w = block.slot(std::string(lora_target_name(t)) + ".weight");
      // W(out, in) += scale * B(out, r) @ A(r, in)
      be->gemm(false, false, static_cast<int>(o.out), static_cast<int>(o.in), mopts.lora.rank, scale, lw + o.b,
               mopts.lora.rank, lw + o.a, static_cast<int>(o.in), 1.f, params.mutable_params(layout.block_unit(l)) + w.offset,
               static_cast<int>(o.in));
    }
  }
  const std::string out = cfg.get_string("init.output");
  save_hf_model(out, mc, layout, cfg.get_string("init.dtype") == "bfloat16", *be, params);
  std::cout << "merge: wrote " << base << " + " << adapter << " (r=" << mopts.lora.rank << ", scale " << scale
            << ") to " << out << "\n";
  return 0;
}

}  // namespace llamaft
