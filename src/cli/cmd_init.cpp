// `llamaft init`: a randomly initialised Llama in HF format, initialised as
// transformers does (normal(0, 0.02) for linear and embedding weights, ones
// for RMSNorm). Tensors are generated and written one at a time.
#include <sys/statvfs.h>

#include <cmath>
#include <iostream>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/hf_model.hpp"

namespace llamaft {

int run_init(const Config& cfg) {
  const std::string preset = cfg.get_string("init.preset");
  const std::string out = cfg.get_string("init.output");
  const uint64_t seed = static_cast<uint64_t>(cfg.get_int("init.seed"));
  const bool bf16 = cfg.get_string("init.dtype") == "bfloat16";
  const LlamaConfig model_cfg = preset_config(preset);
  const ParamLayout layout(model_cfg);
  const double bytes = static_cast<double>(model_cfg.num_parameters()) * (bf16 ? 2 : 4);

  struct statvfs fs;
  std::string parent = out.substr(0, out.find_last_of('/') == std::string::npos ? 0 : out.find_last_of('/'));
  if (parent.empty()) parent = ".";
  if (statvfs(parent.c_str(), &fs) == 0) {
    const double free_bytes = static_cast<double>(fs.f_bavail) * fs.f_frsize;
    LLAMAFT_REQUIRE(bytes * 1.05 < free_bytes, "init: preset '", preset, "' needs ", bytes / 1e9,
                    " GB on disk but only ", free_bytes / 1e9, " GB are free under '", parent,
                    "'; use `llamaft plan` to study large shapes without writing them");
  }

  std::vector<std::string> names;
  for (const auto& u : layout.units())
    for (const auto& t : u.tensors) names.push_back(t.hf_name);
  save_hf_model(out, model_cfg, layout, bf16, [&](const TensorSlot& slot, float* dst) {
    const bool is_norm = slot.shape.size() == 1;
    if (is_norm) {
      for (int64_t i = 0; i < slot.numel(); ++i) dst[i] = 1.f;
      return;
    }
    // One stream per tensor, keyed by its index, so results do not depend on
    // the order tensors are written in.
    const uint64_t id = std::find(names.begin(), names.end(), slot.hf_name) - names.begin();
    Rng rng(seed, id + 1);
    for (int64_t i = 0; i < slot.numel(); ++i) dst[i] = static_cast<float>(0.02 * rng.normal());
  });
  std::cout << "init: wrote " << preset << " (" << model_cfg.num_parameters() << " parameters, "
            << (bf16 ? "bf16" : "fp32") << ") to " << out << "\n";
  return 0;
}

}  // namespace llamaft
