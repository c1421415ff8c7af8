#include "model/hf_model.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "core/error.hpp"
#include "core/util.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/lora.hpp"

namespace llamaft {

namespace {

// Buffers HF keeps in some checkpoints that are not parameters.
bool ignorable(const std::string& name, bool tied) {
  if (name.size() > 19 && name.compare(name.size() - 19, 19, "rotary_emb.inv_freq") == 0) return true;
  return tied && name == "lm_head.weight";  // HF ignores it when tied
}

}  // namespace

LlamaConfig read_model_config(const std::string& model_dir) {
  struct stat st;
  LLAMAFT_REQUIRE(stat(model_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "model directory '", model_dir,
                  "' does not exist (expected a Hugging Face folder with config.json and *.safetensors)");
  return LlamaConfig::from_file(model_dir + "/config.json");
}

void load_hf_weights(const std::string& model_dir, const ParamLayout& layout, Backend& be,
                     ResidentParams& params) {
  io::HfTensorSet set(model_dir);
  std::set<std::string> expected;
  std::vector<float> staging;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind == UnitKind::kLora) continue;  // adapters come from load_adapter
    staging.assign(unit.numel, 0.f);
    for (const auto& slot : unit.tensors) {
      expected.insert(slot.hf_name);
      LLAMAFT_REQUIRE(set.has(slot.hf_name), model_dir, ": tensor '", slot.hf_name,
                      "' is missing from the safetensors files (config.json says it must exist)");
      const io::TensorInfo& info = set.info(slot.hf_name);
      LLAMAFT_REQUIRE(info.shape == slot.shape, model_dir, ": tensor '", slot.hf_name, "' has shape ",
                      shape_str(info.shape), " but config.json implies ", shape_str(slot.shape));
      set.read_f32(slot.hf_name, 0, slot.numel(), staging.data() + slot.offset);
      require_finite(staging.data() + slot.offset, slot.numel(), model_dir + ": tensor '" + slot.hf_name + "'");
    }
    be.to_device(params.mutable_params(u), staging.data(), staging.size() * sizeof(float));
  }
  // Anything else in the files means the checkpoint and config.json disagree.
  bool tied = true;
  for (const auto& t : layout.units()[layout.head_unit()].tensors) tied &= t.hf_name != "lm_head.weight";
  for (const auto& name : set.names()) {
    if (expected.count(name) || ignorable(name, tied)) continue;
    LLAMAFT_FAIL(model_dir, ": unexpected tensor '", name,
                 "' does not belong to a Llama with this config.json");
  }
}

void save_model_config(const std::string& model_dir, const LlamaConfig& cfg, bool bf16) {
  make_directories(model_dir);
  LlamaConfig out_cfg = cfg;
  out_cfg.torch_dtype = bf16 ? "bfloat16" : "float32";
  write_file_durably(model_dir + "/config.json", out_cfg.to_json());
}

void require_finite(const float* x, size_t n, const std::string& what) {
  // The first non-finite index, found by every core (the common case, all
  // finite, reads the array once).
  size_t first = n;
#pragma omp parallel for reduction(min : first) schedule(static) if (n >= (1 << 16))
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]) && i < first) first = i;
  for (size_t i = first; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw Error(str_cat(what, " holds a non-finite value (", x[i], " at element ", i,
                          "); refusing to write or use it"),
                  kExitDiverged);
}

uint64_t parse_shard_size(const std::string& text, const std::string& key) {
  // transformers' convert_file_size_to_int: GB/MB/KB are powers of 1000,
  // GiB/MiB/KiB of 1024; a bare number is bytes; 0 or "" means one file.
  if (text.empty()) return 0;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  static const std::pair<const char*, double> kUnits[] = {{"", 1},          {"B", 1},          {"KB", 1e3},
                                                          {"MB", 1e6},      {"GB", 1e9},       {"TB", 1e12},
                                                          {"KiB", 1024.0},  {"MiB", 1048576.0}, {"GiB", 1073741824.0},
                                                          {"TiB", 1099511627776.0}};
  for (const auto& [name, scale] : kUnits)
    if (used > 0 && unit == name && value >= 0 && std::isfinite(value) && value * scale < 1.8e19)
      return static_cast<uint64_t>(value * scale);
  LLAMAFT_FAIL(key, " = '", text, "' is not a size: give bytes or a number with KB, MB, GB (powers of 1000) or "
               "KiB, MiB, GiB (powers of 1024), e.g. 5GB as Hugging Face writes; 0 writes a single file");
}

namespace {

// One output file: the layout's tensors [first, last) in order.
struct ShardPlan {
  std::string file;
  std::vector<const TensorSlot*> tensors;
  uint64_t bytes = 0;
};

// Hugging Face's split (transformers' shard_checkpoint): tensors in order, a
// new shard whenever the next one would overflow `max_bytes`; a tensor larger
// than the limit sits alone. File names as transformers writes them.
std::vector<ShardPlan> plan_shards(const ParamLayout& layout, size_t elem_bytes, uint64_t max_bytes) {
  std::vector<ShardPlan> shards(1);
  for (const auto& u : layout.units()) {
    if (u.kind == UnitKind::kLora) continue;
    for (const auto& t : u.tensors) {
      const uint64_t b = static_cast<uint64_t>(t.numel()) * elem_bytes;
      if (max_bytes > 0 && !shards.back().tensors.empty() && shards.back().bytes + b > max_bytes) shards.emplace_back();
      shards.back().tensors.push_back(&t);
      shards.back().bytes += b;
    }
  }
  if (shards.size() == 1 || max_bytes == 0) {
    shards.resize(1);
    shards[0].file = "model.safetensors";
    return shards;
  }
  char name[64];
  for (size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    shards[i].file = name;
  }
  return shards;
}

// The other form's files from an earlier write into the same folder: the
// index (when writing one file), model.safetensors (when writing shards), and
// shard files that are not part of this write. Left in place they would be
// read instead of, or beside, what was just written.
void remove_stale_weights(const std::string& model_dir, const std::vector<ShardPlan>& written) {
  std::set<std::string> keep;
  for (const auto& s : written) keep.insert(s.file);
  if (written.size() > 1) keep.insert("model.safetensors.index.json");
  DIR* d = opendir(model_dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (const dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    const bool weights = n == "model.safetensors" || n == "model.safetensors.index.json" ||
                         (n.rfind("model-", 0) == 0 && n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0);
    if (weights && !keep.count(n)) stale.push_back(n);
  }
  closedir(d);
  for (const auto& n : stale) LLAMAFT_REQUIRE(std::remove((model_dir + "/" + n).c_str()) == 0,
                                              "cannot remove the stale '", model_dir, "/", n, "': ", std::strerror(errno));
}

}  // namespace

void save_hf_model(const std::string& model_dir, const LlamaConfig& cfg, const ParamLayout& layout, bool bf16,
                   const std::function<void(const TensorSlot&, float*)>& fill, uint64_t max_shard_bytes,
                   const std::function<void()>& before_config) {
  make_directories(model_dir);
  const io::DType dt = bf16 ? io::DType::BF16 : io::DType::F32;
  const std::vector<ShardPlan> shards = plan_shards(layout, io::dtype_size(dt), max_shard_bytes);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total = 0;
  // Each file written under a temporary name and renamed when complete and on
  // disk; then the index; config.json last, so a folder with a config.json
  // is a whole model.
  for (const ShardPlan& shard : shards) {
    io::SafetensorsWriter writer;
    for (const TensorSlot* t : shard.tensors) writer.add(t->hf_name, dt, t->shape);
    writer.set_metadata("format", "pt");
    writer.set_metadata("producer", "llamaft " LLAMAFT_VERSION);
    writer.write_file(model_dir + "/" + shard.file, [&](io::SafetensorsOutput& out) {
      // Uninitialised (fill writes every element): zero-filling the largest
      // tensor, the embedding, would be a serial pass over gigabytes.
      std::unique_ptr<float[]> buf;
      int64_t capacity = 0;
      for (const TensorSlot* t : shard.tensors) {
        if (t->numel() > capacity) buf.reset(new float[static_cast<size_t>(capacity = t->numel())]);
        fill(*t, buf.get());
        require_finite(buf.get(), static_cast<size_t>(t->numel()), "tensor '" + t->hf_name + "'");
        writer.write_f32(out, t->hf_name, 0, t->numel(), buf.get());
        weight_map[t->hf_name] = shard.file;
      }
    });
    total += shard.bytes;
  }
  if (shards.size() > 1) {
    const nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_durably(model_dir + "/model.safetensors.index.json", index.dump(2) + "\n");
  }
  remove_stale_weights(model_dir, shards);
  if (before_config) before_config();
  save_model_config(model_dir, cfg, bf16);
}

void save_hf_model(const std::string& model_dir, const LlamaConfig& cfg, const ParamLayout& layout,
                   bool bf16, Backend& be, ResidentParams& params, uint64_t max_shard_bytes,
                   const std::function<void()>& before_config) {
  std::vector<int> unit_of;
  save_hf_model(model_dir, cfg, layout, bf16, [&](const TensorSlot& slot, float* dst) {
    int unit = -1;
    const TensorSlot* s = nullptr;
    LLAMAFT_CHECK(layout.find(slot.hf_name, &unit, &s), "unknown tensor ", slot.hf_name);
    be.to_host(dst, params.params(unit) + s->offset, sizeof(float) * s->numel());
  }, max_shard_bytes, before_config);
}

namespace {
std::string target_list(const LoraSpec& spec) {
  std::string out;
  for (int i = 0; i < kNumLoraTargets; ++i)
    if (spec.targets[i]) out += std::string(out.empty() ? "" : ", ") + lora_target_name(i);
  return "[" + out + "]";
}
}  // namespace

void check_adapter_tensors(const io::SafetensorsFile& file, const ParamLayout& layout, const std::string& adapter_dir) {
  std::unordered_set<std::string> expected;
  for (const Unit& unit : layout.units())
    if (unit.kind == UnitKind::kLora)
      for (const auto& slot : unit.tensors) expected.insert(slot.hf_name);
  for (const auto& t : file.header().tensors)
    LLAMAFT_REQUIRE(expected.count(t.name), adapter_dir, "/adapter_model.safetensors holds '", t.name,
                    "', which adapter_config.json does not describe (target_modules ", target_list(layout.lora()),
                    ", r = ", layout.lora().rank, "); an edited config or a mismatched file: the adapter is read exactly or not at all");
  for (const auto& name : expected)
    LLAMAFT_REQUIRE(file.header().find(name), adapter_dir, "/adapter_model.safetensors has no tensor '", name,
                    "', which adapter_config.json's target_modules ", target_list(layout.lora()),
                    " and the base model's layers call for");
}

const io::TensorInfo& adapter_tensor(const io::SafetensorsFile& file, const TensorSlot& slot,
                                    const std::string& adapter_dir) {
  const io::TensorInfo* t = file.header().find(slot.hf_name);
  LLAMAFT_REQUIRE(t, adapter_dir, ": adapter has no tensor '", slot.hf_name, "'");
  LLAMAFT_REQUIRE(t->shape == slot.shape, adapter_dir, ": '", slot.hf_name, "' has shape ", shape_str(t->shape),
                  " but the base model needs ", shape_str(slot.shape));
  return *t;
}

ResidentModel load_resident_model(const std::string& model_dir, const std::string& adapter_dir, Backend& be,
                                  quant::Kind base_quant, bool bf16) {
  ResidentModel m;
  m.config = read_model_config(model_dir);
  ModelOptions opts;
  opts.bf16_storage = bf16;
  if (!adapter_dir.empty()) opts.lora = read_adapter_config(adapter_dir);
  m.model = std::make_unique<LlamaModel>(m.config, be, opts);
  m.params = std::make_unique<ResidentParams>(be, m.model->layout());
  load_hf_weights(model_dir, m.model->layout(), be, *m.params);
  if (base_quant != quant::Kind::kNone) {
    const ParamLayout& layout = m.model->layout();
    std::vector<float> w;
    for (int u = 0; u < layout.num_units(); ++u) {
      if (layout.units()[u].kind != UnitKind::kBlock) continue;
      for (const auto& slot : layout.units()[u].tensors) {
        if (!quant::is_quantized_slot(slot)) continue;
        w.resize(slot.numel());
        float* dev = m.params->mutable_params(u) + slot.offset;
        be.to_host(w.data(), dev, w.size() * sizeof(float));
        if (base_quant == quant::Kind::kNf4 || base_quant == quant::Kind::kNf4Plain)
          quant::dequantize_nf4(quant::quantize_nf4(w.data(), slot.numel(), base_quant == quant::Kind::kNf4),
                                slot.numel(), w.data());
        else if (base_quant == quant::Kind::kBf16)
          for (float& x : w) x = bf16_to_f32(f32_to_bf16(x));
        else
          quant::dequantize_int8(quant::quantize_int8(w.data(), slot.numel()), slot.numel(), w.data());
        be.to_device(dev, w.data(), w.size() * sizeof(float));
      }
    }
  }
  if (!adapter_dir.empty()) load_adapter(adapter_dir, m.model->layout(), be, *m.params);
  if (bf16) m.params->round_copies_to_bf16();
  return m;
}

void load_adapter(const std::string& adapter_dir, const ParamLayout& layout, Backend& be, ResidentParams& params) {
  io::SafetensorsFile file(adapter_dir + "/adapter_model.safetensors");
  check_adapter_tensors(file, layout, adapter_dir);
  std::vector<float> staging;
  for (int u = 0; u < layout.num_units(); ++u) {
    const Unit& unit = layout.units()[u];
    if (unit.kind != UnitKind::kLora) continue;
    staging.assign(unit.numel, 0.f);
    for (const auto& slot : unit.tensors)
      file.read_f32(adapter_tensor(file, slot, adapter_dir), 0, slot.numel(), staging.data() + slot.offset);
    be.to_device(params.mutable_params(u), staging.data(), staging.size() * sizeof(float));
  }
}

}  // namespace llamaft
