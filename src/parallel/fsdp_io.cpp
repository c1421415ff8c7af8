#include "parallel/fsdp_io.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/hf_model.hpp"

namespace llamaft {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

void load_sharded(const std::string& model_dir, Fsdp& fsdp, Backend& be) {
  io::HfTensorSet set(model_dir);
  const auto& layout = fsdp.layout();
  std::vector<float> staging;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    for (const auto& slot : unit.tensors) {
      LLAMAFT_REQUIRE(set.has(slot.hf_name), model_dir, ": tensor '", slot.hf_name,
                      "' is missing from the safetensors files (config.json says it must exist)");
      const auto& info = set.info(slot.hf_name);
      LLAMAFT_REQUIRE(info.shape == slot.shape, model_dir, ": tensor '", slot.hf_name, "' has shape ",
                      shape_str(info.shape), " but config.json implies ", shape_str(slot.shape));
    }
    const ShardGeometry& g = fsdp.geometry(u);
    staging.assign(g.shard_size, 0.f);  // padding stays zero
    for_each_piece(unit, g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
      set.read_f32(slot.hf_name, elem, count, staging.data() + dst);
    });
    be.to_device(fsdp.master(u), staging.data(), staging.size() * sizeof(float));
  }
}

void export_sharded(const std::string& dir, const LlamaConfig& cfg, Fsdp& fsdp, Backend& be, bool bf16) {
  const auto& layout = fsdp.layout();
  Communicator& world = fsdp.world();
  io::SafetensorsWriter writer;
  const io::DType dt = bf16 ? io::DType::BF16 : io::DType::F32;
  for (const auto& u : layout.units())
    for (const auto& t : u.tensors) writer.add(t.hf_name, dt, t.shape);
  writer.set_metadata("format", "pt");
  const std::string path = dir + "/model.safetensors";

  // Rank 0 lays the file out; a failure there must reach every rank.
  int64_t failed = 0;
  std::string error;
  if (world.rank() == 0) {
    try {
      save_model_config(dir, cfg, bf16);
      writer.create(path);
    } catch (const Error& e) {
      failed = 1;
      error = e.what();
    }
  }
  world.all_reduce_max(&failed, 1);
  if (world.rank() == 0 && failed) throw Error(error);
  LLAMAFT_REQUIRE(!failed, "export to '", dir, "' failed on rank 0");

  if (fsdp.writes_exports()) {
    io::SafetensorsOutput out(path);
    std::vector<float> host;
    for (int u = 0; u < layout.num_units(); ++u) {
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

}  // namespace llamaft
