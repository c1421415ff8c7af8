// `llamaft generate`: prefill the prompt into a KV cache, then decode one
// token at a time. Greedy at temperature 0; otherwise temperature + top-p
// sampling from a seeded stream, so a run is reproducible.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "data/templates.hpp"
#include "data/tokenizer.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"

namespace llamaft {

namespace {

std::vector<int32_t> parse_ids(const std::string& text, int64_t vocab) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    LLAMAFT_REQUIRE(*end == '\0', "generate: --prompt-ids must be comma-separated integers, got '", item, "'");
    LLAMAFT_REQUIRE(v >= 0 && v < vocab, "generate: prompt id ", v, " is outside the vocabulary [0, ", vocab, ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  LLAMAFT_REQUIRE(!ids.empty(), "generate: --prompt-ids is empty");
  return ids;
}

int32_t sample(const std::vector<float>& logits, double temperature, double top_p, Rng& rng) {
  if (temperature <= 0.0) return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += p[i] = std::exp((logits[i] - mx) / temperature);
  std::vector<int32_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // Keep the smallest prefix whose mass reaches top_p (at least one token).
  double kept = 0;
  size_t n = 0;
  while (n < order.size() && (n == 0 || kept < top_p * total)) kept += p[order[n++]];
  double u = rng.uniform() * kept;
  for (size_t i = 0; i < n; ++i) {
    u -= p[order[i]];
    if (u <= 0) return order[i];
  }
  return order[n - 1];
}

}  // namespace

int run_generate(const Config& cfg) {
  apply_runtime_settings(cfg);
  auto be = make_backend(cfg);
  const std::string dir = cfg.get_string("model.path");
  const LlamaConfig mc = read_model_config(dir);
  auto tok = load_tokenizer(cfg.get_string("model.tokenizer"), dir);

  std::vector<int32_t> prompt;
  const bool has_text = !cfg.get_string("generate.prompt").empty();
  const bool has_ids = !cfg.get_string("generate.prompt_ids").empty();
  LLAMAFT_REQUIRE(has_text != has_ids, "generate: give exactly one of --prompt TEXT or --prompt-ids IDS");
  if (has_ids) {
    prompt = parse_ids(cfg.get_string("generate.prompt_ids"), mc.vocab_size);
  } else {
    LLAMAFT_REQUIRE(tok, "generate: --prompt needs a tokenizer, but '", dir,
                    "' has no tokenizer.model; pass --tokenizer PATH or use --prompt-ids");
    const Template tmpl = parse_template(cfg.get_string("generate.template"));
    if (tmpl == Template::kNone) {
      prompt = tok->encode(cfg.get_string("generate.prompt"));
      prompt.insert(prompt.begin(), static_cast<int32_t>(mc.bos_token_id));
    } else {
      // A chat turn in the template, then the open assistant turn to continue.
      std::vector<Message> msgs;
      if (!cfg.get_string("generate.system").empty()) msgs.push_back({"system", cfg.get_string("generate.system")});
      msgs.push_back({"user", cfg.get_string("generate.prompt")});
      prompt = render_chat(*tok, tmpl, msgs, true).ids;
      if (tmpl == Template::kLlama3) {
        prompt.push_back(tok->special_id("<|start_header_id|>"));
        for (int32_t id : tok->encode("assistant")) prompt.push_back(id);
        prompt.push_back(tok->special_id("<|end_header_id|>"));
        for (int32_t id : tok->encode("\n\n")) prompt.push_back(id);
      }
    }
  }

  ResidentModel rm = load_resident_model(dir, cfg.get_string("model.adapter"), *be,
                                         eval_quant_from_config(cfg));  // base + adapter, unmerged
  LlamaModel& model = *rm.model;
  ResidentParams& params = *rm.params;

  const int max_new = static_cast<int>(cfg.get_int("generate.max_new_tokens"));
  const double temperature = cfg.get_float("generate.temperature");
  const double top_p = cfg.get_float("generate.top_p");
  const bool stop_at_eos = cfg.get_bool("generate.stop_at_eos");
  // Stop tokens: the model's EOS ids, the template's end of turn, and --stop-ids.
  std::vector<int64_t> stops = mc.eos_token_ids;
  if (tok) {
    for (const char* end : {"<|eot_id|>", "</s>"})
      if (tok->special_id(end) >= 0) stops.push_back(tok->special_id(end));
  }
  if (!cfg.get_string("generate.stop_ids").empty())
    for (int32_t id : parse_ids(cfg.get_string("generate.stop_ids"), mc.vocab_size)) stops.push_back(id);
  Rng rng(static_cast<uint64_t>(cfg.get_int("generate.seed")), 0x6e6);
  model.reset_cache(static_cast<int>(prompt.size()) + max_new);

  std::vector<int32_t> out;
  std::vector<float> logits = model.decode(prompt.data(), static_cast<int>(prompt.size()), params);
  bool stopped = false;
  for (int i = 0; i < max_new; ++i) {
    const int32_t next = sample(logits, temperature, top_p, rng);
    if (stop_at_eos && std::find(stops.begin(), stops.end(), next) != stops.end()) {
      stopped = true;
      break;
    }
    out.push_back(next);
    if (i + 1 < max_new) logits = model.decode(&next, 1, params);
  }

  const std::string text = tok ? tok->decode(out) : "";
  if (cfg.get_bool("generate.json")) {
    nlohmann::json j = {{"prompt_ids", prompt}, {"ids", out}, {"text", text}, {"stopped_at_eos", stopped}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else if (tok) {
    std::cout << text << std::endl;
  } else {
    for (size_t i = 0; i < out.size(); ++i) std::cout << (i ? "," : "") << out[i];
    std::cout << std::endl;
  }
  return 0;
}

}  // namespace llamaft
