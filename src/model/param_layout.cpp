#include "model/param_layout.hpp"

#include "core/error.hpp"

#include <cmath>

namespace llamaft {

namespace {
void add(Unit& u, std::string name, std::vector<int64_t> shape) {
  TensorSlot s{std::move(name), std::move(shape), u.numel};
  u.numel += s.numel();
  u.tensors.push_back(std::move(s));
}
}  // namespace

const char* lora_target_name(int target) {
  static const char* names[kNumLoraTargets] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"};
  return names[target];
}

float LoraSpec::scale() const {
  return static_cast<float>(rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank);
}

ParamLayout::ParamLayout(const LlamaConfig& c, const LoraSpec& lora) : num_layers_(static_cast<int>(c.num_hidden_layers)), lora_(lora) {
  const int64_t d = c.hidden_size, f = c.intermediate_size, qd = c.q_dim(), kvd = c.kv_dim();
  Unit embed{UnitKind::kEmbedding, -1, "embed", {}, 0};
  add(embed, "model.embed_tokens.weight", {c.vocab_size, d});
  units_.push_back(std::move(embed));

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Unit b{UnitKind::kBlock, l, "layers." + std::to_string(l), {}, 0};
    add(b, p + "input_layernorm.weight", {d});
    add(b, p + "self_attn.q_proj.weight", {qd, d});
    add(b, p + "self_attn.k_proj.weight", {kvd, d});
    add(b, p + "self_attn.v_proj.weight", {kvd, d});
    add(b, p + "self_attn.o_proj.weight", {d, qd});
    add(b, p + "post_attention_layernorm.weight", {d});
    add(b, p + "mlp.gate_proj.weight", {f, d});
    add(b, p + "mlp.up_proj.weight", {f, d});
    add(b, p + "mlp.down_proj.weight", {d, f});
    if (l == 0) {
      block_offsets_ = {b.tensors[0].offset, b.tensors[1].offset, b.tensors[4].offset,
                        b.tensors[5].offset, b.tensors[6].offset, b.tensors[8].offset};
    }
    units_.push_back(std::move(b));
  }

  Unit head{UnitKind::kHead, -1, "head", {}, 0};
  add(head, "model.norm.weight", {d});
  if (!c.tie_word_embeddings) add(head, "lm_head.weight", {c.vocab_size, d});
  units_.push_back(std::move(head));

  if (!lora_.enabled()) return;
  // LoRA: the base is frozen; one trainable unit of adapters per layer, named
  // as PEFT saves them.
  for (auto& u : units_) u.trainable = false;
  const int64_t r = lora_.rank;
  const int64_t in_out[kNumLoraTargets][2] = {{d, qd}, {d, kvd}, {d, kvd}, {qd, d}, {d, f}, {d, f}, {f, d}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    Unit u{UnitKind::kLora, l, "lora." + std::to_string(l), {}, 0};
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!lora_.targets[t]) continue;
      const std::string module = t <= kO ? "self_attn." : "mlp.";
      const std::string p = "base_model.model.model.layers." + std::to_string(l) + "." + module + lora_target_name(t);
      const int64_t in = in_out[t][0], out = in_out[t][1];
      if (l == 0) lora_offsets_[t] = {u.numel, u.numel + r * in, in, out};
      add(u, p + ".lora_A.weight", {r, in});
      add(u, p + ".lora_B.weight", {out, r});
    }
    units_.push_back(std::move(u));
  }
}

int64_t ParamLayout::total_numel() const {
  int64_t n = 0;
  for (const auto& u : units_) n += u.numel;
  return n;
}

bool ParamLayout::find(const std::string& hf_name, int* unit, const TensorSlot** slot) const {
  for (size_t i = 0; i < units_.size(); ++i)
    for (const auto& t : units_[i].tensors)
      if (t.hf_name == hf_name) {
        *unit = static_cast<int>(i);
        *slot = &t;
        return true;
      }
  return false;
}

}  // namespace llamaft
