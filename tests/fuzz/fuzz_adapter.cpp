// Fuzz target: a PEFT adapter folder (sections: adapter_config.json,
// adapter_model.safetensors) loaded as eval, generate and merge load it:
// read_adapter_config, a layout for a small Llama with that LoRA spec, then
// load_adapter into resident parameters on the CPU backend. Either it loads
// exactly or it raises llamaft::Error; anything else is a bug.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/registry.hpp"
#include "core/error.hpp"
#include "fuzz_sections.hpp"
#include "model/hf_model.hpp"
#include "model/llama.hpp"
#include "model/lora.hpp"
#include "model/param_layout.hpp"

namespace {
// Small enough that a layout per input is cheap: d 16, 2 layers, GQA 2/1.
llamaft::LlamaConfig small_config() {
  llamaft::LlamaConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = fuzz::scratch_dir("adapter");
  static const std::unique_ptr<llamaft::Backend> be = llamaft::make_backend("cpu");
  const auto sections = fuzz::split_sections(data, size, fuzz::section_count());
  fuzz::write_file(dir + "/adapter_config.json", sections[0]);
  fuzz::write_file(dir + "/adapter_model.safetensors", sections[1]);
  try {
    const llamaft::LoraSpec spec = llamaft::read_adapter_config(dir);
    if (spec.rank <= 0 || spec.rank > 64) return 0;  // a huge r is a valid config, just not a small one to allocate
    const llamaft::ParamLayout layout(small_config(), spec);
    llamaft::ResidentParams params(*be, layout);
    llamaft::load_adapter(dir, layout, *be, params);
  } catch (const llamaft::Error&) {
  }
  return 0;
}

namespace fuzz {

size_t section_count() { return 2; }

namespace {
// A safetensors file with the LoRA pairs of `modules` for small_config(),
// r = 2, in `dtype` (F32 or BF16; values are bytes, not checked here).
Bytes adapter_file(const std::vector<std::string>& modules, const std::string& dtype, int r = 2) {
  const int64_t d = 16, q = 16, kv = 8, ffn = 24;
  auto out_in = [&](const std::string& m) -> std::pair<int64_t, int64_t> {
    if (m == "q_proj" || m == "o_proj") return {m == "q_proj" ? q : d, m == "q_proj" ? d : q};
    if (m == "k_proj" || m == "v_proj") return {kv, d};
    if (m == "down_proj") return {d, ffn};
    return {ffn, d};
  };
  const int64_t elem = dtype == "F32" ? 4 : 2;
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  int64_t off = 0;
  for (int layer = 0; layer < 2; ++layer)
    for (const auto& m : modules) {
      const auto [o, i] = out_in(m);
      const std::string attn = m == "q_proj" || m == "k_proj" || m == "v_proj" || m == "o_proj" ? "self_attn" : "mlp";
      const std::string pre = "base_model.model.model.layers." + std::to_string(layer) + "." + attn + "." + m;
      for (const auto& [name, shape] : {std::pair<std::string, std::pair<int64_t, int64_t>>{".lora_A.weight", {r, i}},
                                        {".lora_B.weight", {o, r}}}) {
        const int64_t bytes = shape.first * shape.second * elem;
        header += ",\"" + pre + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" + std::to_string(shape.first) +
                  "," + std::to_string(shape.second) + "],\"data_offsets\":[" + std::to_string(off) + "," +
                  std::to_string(off + bytes) + "]}";
        off += bytes;
      }
    }
  header += "}";
  std::string file(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(n >> (8 * i));
  file += header;
  for (int64_t i = 0; i < off; ++i) file += static_cast<char>(i % 7 == 0 ? 0x3c : 0x01);
  return text(file);
}

std::string config(const std::string& targets, const std::string& extra = "") {
  return "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": " + targets +
         ", \"bias\": \"none\"" + extra + "}";
}
}  // namespace

std::vector<Bytes> seeds() {
  const std::vector<std::string> all = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  const std::string all_json = R"(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])";
  return {
      join_sections({text(config(R"(["q_proj", "v_proj"])")), adapter_file({"q_proj", "v_proj"}, "F32")}),
      join_sections({text(config(all_json, R"(, "use_rslora": true, "lora_dropout": 0.1)")), adapter_file(all, "BF16")}),
      join_sections({text(config(R"(["q_proj"])")), adapter_file({"q_proj", "v_proj"}, "F32")}),   // a tensor not named
      join_sections({text(config(R"(["q_proj", "v_proj"])")), adapter_file({"q_proj"}, "F32")}),   // named, missing
      join_sections({text(config(R"(["q_proj"])")), adapter_file({"q_proj"}, "F32", 3)}),          // other r
      join_sections({text(config(R"(["q_proj"])", R"(, "use_dora": true)")), adapter_file({"q_proj"}, "F32")}),
      join_sections({text(R"({"peft_type": ["LORA"], "r": "2"})"), adapter_file({"q_proj"}, "F32")}),
      join_sections({text("[]"), Bytes{}}),
  };
}

}  // namespace fuzz
