#include "model/hf_model.hpp"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <set>

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
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw Error(str_cat(what, " holds a non-finite value (", x[i], " at element ", i,
                          "); refusing to write or use it"),
                  kExitDiverged);
}

void save_hf_model(const std::string& model_dir, const LlamaConfig& cfg, const ParamLayout& layout,
                   bool bf16, const std::function<void(const TensorSlot&, float*)>& fill) {
  make_directories(model_dir);
  io::SafetensorsWriter writer;
  const io::DType dt = bf16 ? io::DType::BF16 : io::DType::F32;
  for (const auto& u : layout.units())
    if (u.kind != UnitKind::kLora)
      for (const auto& t : u.tensors) writer.add(t.hf_name, dt, t.shape);
  writer.set_metadata("format", "pt");
  writer.set_metadata("producer", "llamaft " LLAMAFT_VERSION);
  // Written under a temporary name and renamed when complete and on disk;
  // config.json last, so a folder with a config.json is a whole model.
  writer.write_file(model_dir + "/model.safetensors", [&](io::SafetensorsOutput& out) {
    std::vector<float> buf;
    for (const auto& u : layout.units())
      for (const auto& t : u.tensors) {
        if (u.kind == UnitKind::kLora) break;
        buf.resize(t.numel());
        fill(t, buf.data());
        require_finite(buf.data(), buf.size(), "tensor '" + t.hf_name + "'");
        writer.write_f32(out, t.hf_name, 0, t.numel(), buf.data());
      }
  });
  save_model_config(model_dir, cfg, bf16);
}

void save_hf_model(const std::string& model_dir, const LlamaConfig& cfg, const ParamLayout& layout,
                   bool bf16, Backend& be, ResidentParams& params) {
  std::vector<int> unit_of;
  save_hf_model(model_dir, cfg, layout, bf16, [&](const TensorSlot& slot, float* dst) {
    int unit = -1;
    const TensorSlot* s = nullptr;
    LLAMAFT_CHECK(layout.find(slot.hf_name, &unit, &s), "unknown tensor ", slot.hf_name);
    be.to_host(dst, params.params(unit) + s->offset, sizeof(float) * s->numel());
  });
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
                                  quant::Kind base_quant) {
  ResidentModel m;
  m.config = read_model_config(model_dir);
  ModelOptions opts;
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
  return m;
}

void load_adapter(const std::string& adapter_dir, const ParamLayout& layout, Backend& be, ResidentParams& params) {
  io::SafetensorsFile file(adapter_dir + "/adapter_model.safetensors");
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
