#include "parallel/fsdp_io.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "core/util.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/export_files.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "core/rng.hpp"

#include <sys/stat.h>
#include <cmath>
#include <functional>
#include <future>

namespace llamaft {

namespace {

// Every tensor of the unit is in the model's files, unquantized, in the shape config.json implies.
void check_unit_tensors(const io::HfTensorSet& set, const Unit& unit, const std::string& model_dir) {
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
}

}  // namespace

LoadStats load_sharded(const std::string& model_dir, Fsdp& fsdp, Backend& be) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  LoadStats stats;
  io::HfTensorSet set(model_dir);
  // Thread-safe (quantize_region reads from every core): pread() and atomics.
  // Reads inside a parallel region count 1/threads of their time towards the
  // wall-clock reading time (the threads read side by side); the rest of the
  // wall time is quantization and copies.
  std::atomic<int64_t> serial_ns{0}, parallel_ns{0};
  std::atomic<uint64_t> bytes{0};
  auto read_f32 = [&](const std::string& name, int64_t elem, int64_t count, float* dst) {
    const auto t0 = Clock::now();
    set.read_f32(name, elem, count, dst);
    (omp_in_parallel() ? parallel_ns : serial_ns) +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
    bytes += static_cast<uint64_t>(count) * io::dtype_size(set.info(name).dtype);
  };
  const auto& layout = fsdp.layout();
  std::vector<float> staging;
  // Read-ahead: while unit u is converted or quantized, the kernel reads
  // unit u + 1's ranges (into the page cache, which is not this process's RSS).
  auto prefetch = [&](int u) {
    if (u >= layout.num_units() || layout.units()[u].kind == UnitKind::kLora) return;
    const Unit& unit = layout.units()[u];
    for (const auto& slot : unit.tensors)
      if (!set.has(slot.hf_name)) return;  // reported below
    if (const quant::UnitCodec* codec = fsdp.codec(u)) {
      for (const auto& r : codec->source_ranges(fsdp.mesh().shard_index))
        set.prefetch(unit.tensors[r.slot].hf_name, r.begin, r.count);
      return;
    }
    for_each_piece(unit, fsdp.geometry(u), [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t) {
      set.prefetch(slot.hf_name, elem, count);
    });
  };
  // On a helper thread: a WILLNEED can block while it submits the reads, and
  // that wait should not hold up this unit's conversion or quantization.
  prefetch(0);
  std::future<void> ahead;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind == UnitKind::kLora) continue;  // adapters: init_lora_sharded / load_adapter_sharded
    if (ahead.valid()) ahead.get();
    ahead = std::async(std::launch::async, prefetch, u + 1);
    check_unit_tensors(set, unit, model_dir);
    const ShardGeometry& g = fsdp.geometry(u);
    if (const quant::UnitCodec* codec = fsdp.codec(u)) {
      staging.assign(g.shard_size, 0.f);  // the quantized region: ~0.53 bytes per NF4 value
      // Quantized at load: each rank reads and quantizes only its own groups.
      codec->quantize_region(
          fsdp.mesh().shard_index, staging.data(),
          [&](int slot, int64_t elem, int64_t count, float* dst) {
            read_f32(unit.tensors[slot].hf_name, elem, count, dst);
          },
          [&](double* sums, size_t n) { fsdp.shard_comm().all_reduce_sum(sums, n); });
      be.to_device(fsdp.master(u), staging.data(), staging.size() * sizeof(float));
      continue;
    }
    // fp32 shards go through a window of kLoadWindowFloats floats, never a copy of
    // the whole shard (the embedding's is 2 GB at np = 1 for llama3-8b).
    for (int64_t w0 = 0; w0 < g.shard_size; w0 += kLoadWindowFloats) {
      const int64_t w1 = std::min(g.shard_size, w0 + kLoadWindowFloats);
      staging.assign(static_cast<size_t>(w1 - w0), 0.f);  // padding stays zero
      for_each_piece(unit, g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
        const int64_t a = std::max(dst, w0), b = std::min(dst + count, w1);
        if (a < b) read_f32(slot.hf_name, elem + (a - dst), b - a, staging.data() + (a - w0));
      });
      be.to_device(fsdp.master(u) + w0, staging.data(), staging.size() * sizeof(float));
    }
  }
  if (ahead.valid()) ahead.get();
  const double wall = std::chrono::duration<double>(Clock::now() - t_start).count();
  stats.read_s = std::min(wall, 1e-9 * (serial_ns.load() + parallel_ns.load() / std::max(1, omp_get_max_threads())));
  stats.bytes_read = bytes.load();
  stats.other_s = wall - stats.read_s;
  return stats;
}

namespace {

// Collective: every rank checks its own shards of the selected units (the
// adapter's or the model's); all must be finite, or none exports (exit 3).
void require_finite_units(const std::string& path, Fsdp& fsdp, Backend& be, bool lora_units) {
  const auto& layout = fsdp.layout();
  std::vector<const float*> shards;
  std::vector<size_t> sizes;
  for (int u = 0; u < layout.num_units(); ++u)
    if ((layout.units()[u].kind == UnitKind::kLora) == lora_units) {
      shards.push_back(fsdp.master(u));
      sizes.push_back(static_cast<size_t>(fsdp.geometry(u).shard_size));
    }
  double sq = be.sum_squares_many(shards.data(), sizes.data(), static_cast<int>(shards.size()));
  fsdp.world().all_reduce_sum(&sq, 1);
  if (!std::isfinite(sq))
    throw Error(str_cat("the trained ", lora_units ? "adapter" : "model",
                        " holds non-finite weights; refusing to export it to '", path, "'"),
                kExitDiverged);
}

// Collective: rank 0 lays out `path`'s temporary twin with the selected
// units' tensors, every writing rank pwrite()s its slices and fsyncs, all
// ranks agree on the outcome, and only then does rank 0 rename the file into
// place and run `rank0_commit` (the small JSON beside it). Non-finite
// weights are refused (exit 3) before anything is written.
void write_units(const std::string& path, Fsdp& fsdp, Backend& be, bool bf16, bool lora_units,
                 const std::function<void()>& rank0_commit, const std::function<void()>& rank0_before_rename = nullptr) {
  const auto& layout = fsdp.layout();
  Communicator& world = fsdp.world();
  auto selected = [&](const Unit& u) { return (u.kind == UnitKind::kLora) == lora_units; };

  require_finite_units(path, fsdp, be, lora_units);

  io::SafetensorsWriter writer;
  const io::DType dt = bf16 ? io::DType::BF16 : io::DType::F32;
  for (const auto& u : layout.units())
    if (selected(u))
      for (const auto& t : u.tensors) writer.add(t.hf_name, dt, t.shape);
  writer.set_metadata("format", "pt");
  writer.set_metadata("producer", "llamaft " LLAMAFT_VERSION);
  const std::string partial = partial_path(path);

  // One outcome for every rank: a failure anywhere (a full disk on rank 0's
  // create, a write or fsync error on any writer) is seen by all before any
  // rank leaves, and the previous file under `path` is untouched.
  std::string error;
  auto attempt = [&](const std::function<void()>& work) {
    int64_t failed = 0;
    if (error.empty()) {
      try {
        work();
      } catch (const Error& e) {
        error = e.what();
      }
    }
    failed = error.empty() ? 0 : 1;
    world.all_reduce_max(&failed, 1);
    return failed == 0;
  };
  bool ok = attempt([&] {
    if (world.rank() != 0) return;
    make_directories(std::filesystem::path(path).parent_path().string());
    writer.create(partial);
  });
  if (ok) ok = attempt([&] {
    if (!fsdp.writes_exports()) return;
    io::SafetensorsOutput out(partial);
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
    out.close();
  });
  if (ok) ok = attempt([&] {
    if (world.rank() != 0) return;
    if (rank0_before_rename) rank0_before_rename();
    commit_partial(path);
    rank0_commit();
  });
  if (!ok) {
    if (world.rank() == 0) ::unlink(partial.c_str());
    world.barrier();
    if (!error.empty()) throw Error(error + " (the export was not written; any earlier file there is intact)");
    throw Error::reported_elsewhere(str_cat("writing '", path, "' failed on another rank"));
  }
}

}  // namespace

void export_sharded(const std::string& dir, const LlamaConfig& cfg, Fsdp& fsdp, Backend& be, bool bf16,
                    const std::string& base_dir) {
  // The base's tokenizer files and generation_config.json go in before the
  // weights are renamed into place, config.json last.
  write_units(dir + "/model.safetensors", fsdp, be, bf16, false, [&] { save_model_config(dir, cfg, bf16); },
              [&] { write_companion_files(base_dir, dir, cfg); });
}

void export_adapter_sharded(const std::string& dir, const std::string& base_model_path, Fsdp& fsdp, Backend& be) {
  write_units(dir + "/adapter_model.safetensors", fsdp, be, false, true, [&] {
    write_file_durably(dir + "/adapter_config.json", adapter_config_json(fsdp.layout().lora(), base_model_path));
  });
}

namespace {

// Each LoRA unit's shard of master weights, zeroed on the host, filled piece
// by piece (fill(u, unit, slot, elem, count, out): out[0, count) are the
// slot's elements [elem, elem + count)) and uploaded.
template <typename Fill>
void fill_lora_shards(Fsdp& fsdp, Backend& be, Fill&& fill) {
  const auto& layout = fsdp.layout();
  std::vector<float> host;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind != UnitKind::kLora) continue;
    const ShardGeometry& g = fsdp.geometry(u);
    host.assign(g.shard_size, 0.f);
    for_each_piece(unit, g, [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
      fill(u, unit, slot, elem, count, host.data() + dst);
    });
    be.to_device(fsdp.master(u), host.data(), host.size() * sizeof(float));
  }
}

}  // namespace

void init_lora_sharded(Fsdp& fsdp, Backend& be, uint64_t seed) {
  // PEFT's init: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
  // B = 0, so step 0 is exactly the base model. Each element's value depends
  // only on (seed, unit, position): any np produces the same adapters.
  fill_lora_shards(fsdp, be, [&](int u, const Unit& unit, const TensorSlot& slot, int64_t elem, int64_t count,
                                 float* out) {
    if (slot.hf_name.find("lora_A") == std::string::npos) return;  // B stays zero
    const double bound = 1.0 / std::sqrt(static_cast<double>(slot.shape[1]));
    Rng rng(seed, 0x10A0000ull + static_cast<uint64_t>(u) * 64 + static_cast<uint64_t>(&slot - unit.tensors.data()));
    rng.skip(static_cast<uint64_t>(elem));
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<float>((2 * rng.uniform() - 1) * bound);
  });
}

void load_adapter_sharded(const std::string& adapter_dir, Fsdp& fsdp, Backend& be) {
  const LoraSpec saved = read_adapter_config(adapter_dir);
  const LoraSpec& want = fsdp.layout().lora();
  LLAMAFT_REQUIRE(saved.rank == want.rank && std::equal(saved.targets, saved.targets + kNumLoraTargets, want.targets),
                  "adapter '", adapter_dir, "' has r = ", saved.rank, " and other target modules than this run's lora.r = ",
                  want.rank, " / lora.targets");
  io::SafetensorsFile file(adapter_dir + "/adapter_model.safetensors");
  const auto& layout = fsdp.layout();
  check_adapter_tensors(file, layout, adapter_dir);
  fill_lora_shards(fsdp, be, [&](int, const Unit&, const TensorSlot& slot, int64_t elem, int64_t count, float* out) {
    file.read_f32(adapter_tensor(file, slot, adapter_dir), elem, count, out);
  });
}

}  // namespace llamaft
