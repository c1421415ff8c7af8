#include "model/param_layout.hpp"

#include "core/error.hpp"

namespace llamaft {

const TensorSlot& Unit::slot(const std::string& suffix) const {
  for (const auto& t : tensors)
    if (t.hf_name.size() >= suffix.size() &&
        t.hf_name.compare(t.hf_name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return t;
  LLAMAFT_CHECK(false, "unit ", name, " has no tensor ending in ", suffix);
}

namespace {
void add(Unit& u, std::string name, std::vector<int64_t> shape) {
  TensorSlot s{std::move(name), std::move(shape), u.numel};
  u.numel += s.numel();
  u.tensors.push_back(std::move(s));
}
}  // namespace

ParamLayout::ParamLayout(const LlamaConfig& c) {
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
