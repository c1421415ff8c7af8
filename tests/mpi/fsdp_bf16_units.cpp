// fsdp_bf16_units: under mpirun, checks that Fsdp::params_bf16 (the units a
// bf16-storage model computes with) is exactly the fp32 unit rounded to bf16
// (nearest even), at any shard count: shards of even size, whose gathered
// words are the unit as they arrive, and of odd size, which are compacted.
// Full fine-tuning (every unit gathered as bf16 words) and LoRA over an NF4
// base (block units dequantized straight to bf16, compared with params()
// rounded). Master values are a function of (unit, element), so every np
// sees the same units. Then, for full fine-tuning, one AdamW step: the units
// gathered after it are the updated master shards rounded (no gather may
// serve weights from before the step).
// Prints one line per case; exit 1 on any mismatch.
// Usage: mpirun -np N fsdp_bf16_units
#include <cmath>
#include <iostream>
#include <vector>

#include "backend/backend.hpp"
#include "comm/communicator.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "model/llama_config.hpp"
#include "model/param_layout.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp.hpp"

using namespace llamaft;

namespace {

float value(int unit, int64_t i) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(i) + unit) * (1.0 + static_cast<double>(i % 7)));
}

// One AdamW step on gradients of both signs, then every unit gathered in bf16
// against the updated master shards (all-gathered) rounded. Returns the
// mismatches.
int64_t check_after_adamw(const char* name, const ParamLayout& layout, Backend& be, Fsdp& fsdp) {
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    std::vector<float> grad(static_cast<size_t>(g.shard_size));
    for (int64_t i = 0; i < g.shard_size; ++i) grad[i] = 0.01f * value(u + 7, g.begin + i);
    be.to_device(fsdp.grad_shard(u), grad.data(), grad.size() * sizeof(float));
  }
  OptimizerConfig c;
  c.lr = 3e-2;
  c.weight_decay = 0.1;
  const StepResult r = adamw_step(fsdp, be, c, 0);
  LLAMAFT_CHECK(r.finite && r.weights_finite, "the AdamW step was not finite");
  int64_t bad = 0, moved = 0;
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    const int64_t n = layout.units()[u].numel;
    std::vector<float> full(static_cast<size_t>(g.padded));
    fsdp.shard_comm().all_gather(fsdp.master_view(u), full.data(), static_cast<size_t>(g.shard_size))->wait();
    std::vector<bf16> got(static_cast<size_t>(n));
    be.to_host(got.data(), fsdp.params_bf16(u), got.size() * sizeof(bf16));
    fsdp.release(u);
    for (int64_t i = 0; i < n; ++i) {
      moved += f32_to_bf16(full[i]) != f32_to_bf16(value(u, i));
      if (got[i].bits != f32_to_bf16(full[i])) {
        if (bad < 5 && fsdp.shard_comm().rank() == 0)
          std::cerr << name << " after AdamW: unit " << u << " element " << i << ": got " << static_cast<float>(got[i])
                    << ", want " << bf16_to_f32(f32_to_bf16(full[i])) << "\n";
        ++bad;
      }
    }
  }
  if (fsdp.shard_comm().rank() == 0)
    std::cout << name << " after one AdamW step: bf16 weights that moved " << moved << ", mismatches " << bad << "\n";
  if (moved == 0) ++bad;  // a step that changed no bf16 weight tests nothing
  return bad;
}

// Returns the number of mismatching elements; counts the units taking each path.
int64_t check(const char* name, const ParamLayout& layout, Backend& be, Communicator& world, quant::Kind kind) {
  FsdpOptions options;
  options.base_quant = kind;
  options.bf16_params = true;
  Fsdp fsdp(layout, be, world, options);
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    std::vector<float> shard(static_cast<size_t>(g.shard_size), 0.f);
    if (const quant::UnitCodec* codec = fsdp.codec(u)) {
      codec->quantize_region(
          fsdp.mesh().shard_index, shard.data(),
          [&](int slot, int64_t elem, int64_t count, float* dst) {
            const int64_t at = layout.units()[u].tensors[slot].offset + elem;
            for (int64_t i = 0; i < count; ++i) dst[i] = 0.05f * value(u, at + i);
          },
          [&](double* sums, size_t n) { world.all_reduce_sum(sums, n); });
    } else {
      for (int64_t i = 0; i < g.shard_size && g.begin + i < layout.units()[u].numel; ++i)
        shard[i] = value(u, g.begin + i);
    }
    be.to_device(fsdp.master(u), shard.data(), shard.size() * sizeof(float));
  }
  int64_t bad = 0;
  int even = 0, odd = 0, quantized = 0;
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const int64_t n = layout.units()[u].numel;
    std::vector<float> want(static_cast<size_t>(n));
    if (fsdp.codec(u)) {
      const float* wide = fsdp.params(u);  // the fp32 dequantization, rounded below
      be.to_host(want.data(), wide, want.size() * sizeof(float));
      fsdp.release(u);
      ++quantized;
    } else {
      for (int64_t i = 0; i < n; ++i) want[i] = value(u, i);
      (fsdp.geometry(u).shard_size % 2 == 0 ? even : odd) += 1;
    }
    std::vector<bf16> got(static_cast<size_t>(n));
    be.to_host(got.data(), fsdp.params_bf16(u), got.size() * sizeof(bf16));
    fsdp.release(u);
    for (int64_t i = 0; i < n; ++i)
      if (got[i].bits != f32_to_bf16(want[i])) {
        if (bad < 5 && world.rank() == 0)
          std::cerr << name << ": unit " << u << " element " << i << ": got " << static_cast<float>(got[i])
                    << ", want " << bf16_to_f32(f32_to_bf16(want[i])) << "\n";
        ++bad;
      }
  }
  if (world.rank() == 0)
    std::cout << name << " np " << world.size() << ": units with even shards " << even << ", odd shards " << odd
              << ", quantized " << quantized << ", mismatches " << bad << "\n";
  if (kind == quant::Kind::kNone) bad += check_after_adamw(name, layout, be, fsdp);
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  init_mpi(&argc, &argv);
  int rc = 0;
  try {
    auto be = make_cpu_backend();
    auto world = make_mpi_world_comm();
    LlamaConfig cfg = preset_config("tiny");
    cfg.vocab_size = 259;  // odd sizes, so some shard counts give odd shards
    cfg.hidden_size = 64;
    cfg.intermediate_size = 96;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.head_dim = 16;
    LoraSpec lora;
    lora.rank = 3;
    for (bool& t : lora.targets) t = true;
    int64_t bad = check("full", ParamLayout(cfg, LoraSpec{}), *be, *world, quant::Kind::kNone);
    bad += check("lora-nf4", ParamLayout(cfg, lora), *be, *world, quant::Kind::kNf4);
    rc = bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "fsdp_bf16_units: " << e.what() << "\n";
    rc = 1;
  }
  finalize_mpi();
  return rc;
}
