#include "parallel/fsdp_io.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "core/util.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "core/rng.hpp"

#include <sys/stat.h>
#include <cmath>
#include <functional>

namespace llamaft {

namespace {

}  // namespace

void load_sharded(const std::string& model_dir, Fsdp& fsdp, Backend& be) {
  io::HfTensorSet set(model_dir);
  const auto& layout = fsdp.layout();
  std::vector<float> staging;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind == UnitKind::kLora) continue;  // adapters: init_lora_sharded / load_adapter_sharded
    for (const auto& slot : unit.tensors) {
      LLAMAFT_REQUIRE(set.has(slot.hf_name), model_dir, ": tensor '", slot.hf_name,
                      "' is missing from the safetensors files (config.json says it must exist)");
      const auto& info = set.info(slot.hf_name);
      LLAMAFT_REQUIRE(info.dtype != io::DType::U8 && !set.has(slot.hf_name + ".absmax"), model_dir, ": tensor '",
                      slot.hf_name, "' is stored pre-quantized (", io::dtype_name(info.dtype),
                      ", e.g. a bitsandbytes 4-bit export); give the bf16/fp32 base model: finetune.method = qlora "
                      "quantizes it at load, bit for bit as bitsandbytes does");
      LLAMAFT_REQUIRE(info.shape == slot.shape, model_dir, ": tensor '", slot.hf_name, "' has shape ",
                      shape_str(info.shape), " but config.json implies ", shape_str(slot.shape));
    }
    const ShardGeometry& g = fsdp.geometry(u);
    staging.assign(g.shard_size, 0.f);  // padding stays zero
    if (const quant::UnitCodec* codec = fsdp.codec(u)) {
      // Quantized at load: each rank reads and quantizes only its own groups.
      codec->quantize_region(
          fsdp.mesh().shard_index, staging.data(),
          [&](int slot, int64_t elem, int64_t count, float* dst) {
            set.read_f32(unit.tensors[slot].hf_name, elem, count, dst);
          },
          [&](double* sums, size_t n) { fsdp.shard_comm().all_reduce_sum(sums, n); });
      be.to_device(fsdp.master(u), staging.data(), staging.size() * sizeof(float));
      continue;
    }
    for_each_piece(unit, g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
      set.read_f32(slot.hf_name, elem, count, staging.data() + dst);
    });
    be.to_device(fsdp.master(u), staging.data(), staging.size() * sizeof(float));
  }
}

namespace {

// Collective: rank 0 lays out `path` with the selected units' tensors, then
// every writing rank pwrite()s its slices.
void write_units(const std::string& path, Fsdp& fsdp, Backend& be, bool bf16, bool lora_units,
                 const std::function<void()>& rank0_prepare) {
  const auto& layout = fsdp.layout();
  Communicator& world = fsdp.world();
  auto selected = [&](const Unit& u) { return (u.kind == UnitKind::kLora) == lora_units; };
  io::SafetensorsWriter writer;
  const io::DType dt = bf16 ? io::DType::BF16 : io::DType::F32;
  for (const auto& u : layout.units())
    if (selected(u))
      for (const auto& t : u.tensors) writer.add(t.hf_name, dt, t.shape);
  writer.set_metadata("format", "pt");

  // Rank 0 lays the file out; a failure there must reach every rank.
  int64_t failed = 0;
  std::string error;
  if (world.rank() == 0) {
    try {
      rank0_prepare();
      writer.create(path);
    } catch (const Error& e) {
      failed = 1;
      error = e.what();
    }
  }
  world.all_reduce_max(&failed, 1);
  if (world.rank() == 0 && failed) throw Error(error);
  LLAMAFT_REQUIRE(!failed, "writing '", path, "' failed on rank 0");

  if (fsdp.writes_exports()) {
    io::SafetensorsOutput out(path);
    std::vector<float> host;
    for (int u = 0; u < layout.num_units(); ++u) {
      if (!selected(layout.units()[u])) continue;
      const ShardGeometry& g = fsdp.geometry(u);
      host.resize(g.shard_size);
      be.to_host(host.data(), fsdp.master(u), host.size() * sizeof(float));
      for_each_piece(layout.units()[u], g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t src) {
        writer.write_f32(out, slot.hf_name, elem, count, host.data() + src);
      });
    }
    out.sync();
  }
  world.barrier();
}

}  // namespace

void export_sharded(const std::string& dir, const LlamaConfig& cfg, Fsdp& fsdp, Backend& be, bool bf16) {
  write_units(dir + "/model.safetensors", fsdp, be, bf16, false, [&] { save_model_config(dir, cfg, bf16); });
}

void export_adapter_sharded(const std::string& dir, const std::string& base_model_path, Fsdp& fsdp, Backend& be) {
  write_units(dir + "/adapter_model.safetensors", fsdp, be, false, true, [&] {
    make_directories(dir);
    std::ofstream(dir + "/adapter_config.json") << adapter_config_json(fsdp.layout().lora(), base_model_path);
  });
}

void init_lora_sharded(Fsdp& fsdp, Backend& be, uint64_t seed) {
  // PEFT's init: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
  // B = 0, so step 0 is exactly the base model. Each element's value depends
  // only on (seed, unit, position): any np produces the same adapters.
  const auto& layout = fsdp.layout();
  std::vector<float> host;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind != UnitKind::kLora) continue;
    const ShardGeometry& g = fsdp.geometry(u);
    host.assign(g.shard_size, 0.f);
    for_each_piece(unit, g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
      if (slot.hf_name.find("lora_A") == std::string::npos) return;  // B stays zero
      const double bound = 1.0 / std::sqrt(static_cast<double>(slot.shape[1]));
      Rng rng(seed, 0x10A0000ull + static_cast<uint64_t>(u) * 64 + static_cast<uint64_t>(&slot - unit.tensors.data()));
      rng.skip(static_cast<uint64_t>(elem));
      for (int64_t i = 0; i < count; ++i) host[dst + i] = static_cast<float>((2 * rng.uniform() - 1) * bound);
    });
    be.to_device(fsdp.master(u), host.data(), host.size() * sizeof(float));
  }
}

void load_adapter_sharded(const std::string& adapter_dir, Fsdp& fsdp, Backend& be) {
  const LoraSpec saved = read_adapter_config(adapter_dir);
  const LoraSpec& want = fsdp.layout().lora();
  LLAMAFT_REQUIRE(saved.rank == want.rank && std::equal(saved.targets, saved.targets + kNumLoraTargets, want.targets),
                  "adapter '", adapter_dir, "' has r = ", saved.rank, " and other target modules than this run's lora.r = ",
                  want.rank, " / lora.targets");
  io::SafetensorsFile file(adapter_dir + "/adapter_model.safetensors");
  const auto& layout = fsdp.layout();
  std::vector<float> host;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind != UnitKind::kLora) continue;
    const ShardGeometry& g = fsdp.geometry(u);
    host.assign(g.shard_size, 0.f);
    for_each_piece(unit, g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
      file.read_f32(adapter_tensor(file, slot, adapter_dir), elem, count, host.data() + dst);
    });
    be.to_device(fsdp.master(u), host.data(), host.size() * sizeof(float));
  }
}

}  // namespace llamaft
