// quant_dump: loads an HF model as the frozen base of a LoRA/QLoRA run would
// be loaded (FSDP full_shard over every rank of the mpirun, each rank
// quantizing only its own groups at load), then gathers the quantized block
// units and writes, for every quantized linear weight, bitsandbytes' view of
// it (codes, qabsmax, absmax2, offset; or int8 codes and absmax) and its
// dequantization as FSDP's params() produces it, all as F32, for
// check_quant.py to compare with the reference implementation.
// Usage: mpirun -np N quant_dump --model DIR --kind nf4|nf4-nodq|int8|bf16 --output OUT.safetensors
#include <iostream>
#include <string>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/hf_model.hpp"
#include "parallel/fsdp.hpp"
#include "parallel/fsdp_io.hpp"
#include "quant/quant.hpp"

using namespace llamaft;

int main(int argc, char** argv) {
  std::string model_dir, kind_name, output;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model_dir = v;
    else if (k == "--kind") kind_name = v;
    else if (k == "--output") output = v;
  }
  if (model_dir.empty() || kind_name.empty() || output.empty()) {
    std::cerr << "usage: quant_dump --model DIR --kind nf4|int8 --output OUT.safetensors\n";
    return 2;
  }
  init_mpi(&argc, &argv);
  int rc = 0;
  try {
    const quant::Kind kind = quant::parse_kind(kind_name);
    auto be = make_cpu_backend();
    auto world = make_mpi_world_comm();
    const LlamaConfig cfg = read_model_config(model_dir);
    LoraSpec lora;
    lora.rank = 4;
    for (bool& t : lora.targets) t = true;
    const ParamLayout layout(cfg, lora);
    FsdpOptions options;
    options.base_quant = kind;
    Fsdp fsdp(layout, *be, *world, options);
    load_sharded(model_dir, fsdp, *be);

    io::SafetensorsWriter w;
    std::vector<std::pair<std::string, std::vector<float>>> out;
    auto put = [&](const std::string& name, std::vector<float> v) {
      w.add(name, io::DType::F32, {static_cast<int64_t>(v.size())});
      out.emplace_back(name, std::move(v));
    };
    std::vector<float> map(quant::dynamic_map(), quant::dynamic_map() + 256);
    put("code8", map);
    for (int u = 0; u < layout.num_units(); ++u) {
      const quant::UnitCodec* codec = fsdp.codec(u);
      if (!codec) continue;
      const ShardGeometry& g = fsdp.geometry(u);
      std::vector<float> regions(g.padded);
      world->all_gather(fsdp.master(u), regions.data(), g.shard_size)->wait();
      const float* deq = fsdp.params(u);  // the training path's dequantization
      for (int t = 0; t < codec->num_quantized(); ++t) {
        const TensorSlot& slot = layout.units()[u].tensors[codec->quantized_slot_index(t)];
        const std::string& n = slot.hf_name;
        if (kind == quant::Kind::kNf4) {
          const quant::Nf4Tensor q = codec->nf4_tensor(regions.data(), t);
          put(n + ".codes", std::vector<float>(q.packed.begin(), q.packed.end()));
          put(n + ".qabsmax", std::vector<float>(q.qabsmax.begin(), q.qabsmax.end()));
          put(n + ".absmax2", q.absmax2);
          put(n + ".offset", {q.offset});
        } else if (kind == quant::Kind::kNf4Plain) {
          const quant::Nf4Tensor q = codec->nf4_tensor(regions.data(), t);
          put(n + ".codes", std::vector<float>(q.packed.begin(), q.packed.end()));
          put(n + ".absmax", q.absmax);
        } else if (kind == quant::Kind::kInt8) {
          const quant::Int8Tensor q = codec->int8_tensor(regions.data(), t);
          put(n + ".q", std::vector<float>(q.q.begin(), q.q.end()));
          put(n + ".absmax", q.absmax);
        }
        put(n + ".dequant", std::vector<float>(deq + slot.offset, deq + slot.offset + slot.numel()));
      }
      fsdp.release(u);
    }
    if (world->rank() == 0) {
      w.create(output);
      for (const auto& [name, v] : out) w.write_f32(output, name, 0, static_cast<int64_t>(v.size()), v.data());
    }
    world->barrier();
  } catch (const std::exception& e) {
    std::cerr << "quant_dump: " << e.what() << "\n";
    rc = 1;
  }
  finalize_mpi();
  return rc;
}
