// `llamaft init`: a randomly initialised Llama in HF format, initialised as
// transformers does (normal(0, 0.02) for linear and embedding weights, ones
// for RMSNorm). Tensors are generated one at a time, each by every core: a
// tensor's values are one Rng stream, cut into fixed blocks that each thread
// starts by skipping ahead, so the file is the same at any thread count.
#include <sys/statvfs.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/util.hpp"
#include "model/hf_model.hpp"

namespace llamaft {

int run_init(const Config& cfg) {
  const std::string preset = cfg.get_string("init.preset");
  const std::string out = cfg.get_string("init.output");
  const uint64_t seed = static_cast<uint64_t>(cfg.get_int("init.seed"));
  const bool bf16 = cfg.get_string("init.dtype") == "bfloat16";
  const uint64_t max_shard = parse_shard_size(cfg.get_string("init.max_shard_size"), "init.max_shard_size");
  const LlamaConfig model_cfg = preset_config(preset);
  require_output_folder(out, cfg.get_bool("init.force"), "init");
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
  const auto t0 = std::chrono::steady_clock::now();
  save_hf_model(out, model_cfg, layout, bf16, [&](const TensorSlot& slot, float* dst) {
    const int64_t n = slot.numel();
    const bool is_norm = slot.shape.size() == 1;
    // One stream per tensor, keyed by its index, so results do not depend on
    // the order tensors are written in.
    const uint64_t id = std::find(names.begin(), names.end(), slot.hf_name) - names.begin();
    constexpr int64_t kBlock = int64_t{1} << 18;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < (n + kBlock - 1) / kBlock; ++b) {
      const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      if (is_norm) {
        std::fill(dst + lo, dst + hi, 1.f);
        continue;
      }
      Rng rng(seed, id + 1);
      rng.skip(2 * static_cast<uint64_t>(lo));  // normal() draws two uniforms per value
      for (int64_t i = lo; i < hi; ++i) dst[i] = static_cast<float>(0.02 * rng.normal());
    }
  }, max_shard);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "init: wrote " << preset << " (" << model_cfg.num_parameters() << " parameters, "
            << (bf16 ? "bf16" : "fp32") << ") to " << out << " in " << secs << " s on " << omp_get_max_threads()
            << " threads\n";
  return 0;
}

}  // namespace llamaft
