// `llamaft generate`: prefill the prompt into a KV cache, then decode one
// token at a time. Greedy at temperature 0; otherwise temperature + top-p
// sampling from a seeded stream, so a run is reproducible.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "data/templates.hpp"
#include "data/tokenizer.hpp"
#include "model/hf_model.hpp"
#include "data/token_ids.hpp"
#include "model/decode.hpp"
#include "model/lora.hpp"

namespace llamaft {

namespace {

// The prompt of --prompt TEXT: the text alone after BOS, or a user turn in
// the chat template (--template, or the model's own when it has one).
std::vector<int32_t> text_prompt(const Config& cfg, const Tokenizer* tok, const LlamaConfig& mc,
                                 const std::string& dir, ChatTemplate& tmpl) {
  LLAMAFT_REQUIRE(tok, "generate: --prompt needs a tokenizer, but '", dir,
                  "' has no tokenizer (tokenizer.model or tokenizer.json); pass --tokenizer PATH or use --prompt-ids");
  LLAMAFT_REQUIRE(tok->vocab_size() <= mc.vocab_size, "generate: the tokenizer ",
                  cfg.get_string("model.tokenizer").empty() ? "next to the model" : "'" + cfg.get_string("model.tokenizer") + "'",
                  " has a vocabulary of ", tok->vocab_size(), " tokens, larger than the model's ", mc.vocab_size,
                  " (", dir, "/config.json vocab_size): its ids would index past the embedding; use the tokenizer "
                  "the model was trained with");
  // The chat template: --template, or the model's own (auto) when it has one.
  const std::string tok_opt = cfg.get_string("model.tokenizer");
  const std::string tmpl_dir =
      tok_opt.empty() ? dir : (tok_opt.find('/') == std::string::npos ? "." : tok_opt.substr(0, tok_opt.rfind('/')));
  tmpl = resolve_template(cfg.get_string("generate.template"), tmpl_dir, "none", "generate");
  const std::string system = cfg.get_string("generate.system");
  std::vector<int32_t> prompt;
  if (tmpl.family == TemplateFamily::kNone) {
    LLAMAFT_REQUIRE(system.empty(), "generate: --system needs a chat template, and the template is none (",
                    tmpl.describe(), "); choose one with --template chatml|llama2|llama3|llama3.1|alpaca");
    prompt = tok->encode(cfg.get_string("generate.prompt"));
    prompt.insert(prompt.begin(), static_cast<int32_t>(mc.bos_token_id));
  } else {
    // A user turn in the template, then the open assistant turn to continue
    // (transformers' add_generation_prompt=True).
    std::vector<Message> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", cfg.get_string("generate.prompt")});
    prompt = render_chat(*tok, tmpl, msgs, true, /*add_generation_prompt=*/true).ids;
  }
  std::cerr << "generate: template " << tmpl.describe() << "\n";
  return prompt;
}

// Stop tokens: the model's EOS ids, the template's end of turn, and --stop-ids.
std::vector<int64_t> stop_ids(const Config& cfg, const LlamaConfig& mc, const Tokenizer* tok,
                              const ChatTemplate& tmpl) {
  std::vector<int64_t> stops = mc.eos_token_ids;
  if (tok) {
    for (const char* end : {"<|eot_id|>", "</s>"})
      if (tok->special_id(end) >= 0) stops.push_back(tok->special_id(end));
    for (int32_t id : end_of_turn_ids(*tok, tmpl)) stops.push_back(id);
  }
  if (!cfg.get_string("generate.stop_ids").empty())
    for (int32_t id : parse_token_ids(cfg.get_string("generate.stop_ids"), mc.vocab_size, "generate: --stop-ids"))
      stops.push_back(id);
  return stops;
}

}  // namespace

int run_generate(const Config& cfg) {
  apply_runtime_settings(cfg);
  auto be = make_backend(cfg);
  const std::string dir = cfg.get_string("model.path");
  const LlamaConfig mc = read_model_config(dir);
  auto tok = load_tokenizer(cfg.get_string("model.tokenizer"), dir);

  std::vector<int32_t> prompt;
  ChatTemplate tmpl = named_template("none");
  const bool has_text = !cfg.get_string("generate.prompt").empty();
  const bool has_ids = !cfg.get_string("generate.prompt_ids").empty();
  LLAMAFT_REQUIRE(has_text != has_ids, "generate: give exactly one of --prompt TEXT or --prompt-ids IDS");
  if (has_ids) {
    prompt = parse_token_ids(cfg.get_string("generate.prompt_ids"), mc.vocab_size, "generate: --prompt-ids");
  } else {
    prompt = text_prompt(cfg, tok.get(), mc, dir, tmpl);
  }

  const bool bf16 = cfg.get_string("eval.dtype") == "bf16";
  ResidentModel rm = load_resident_model(dir, cfg.get_string("model.adapter"), *be, eval_quant_from_config(cfg),
                                         bf16);  // base + adapter, unmerged
  if (bf16) std::cerr << "generate: computing in bf16 (GEMMs: " << be->bf16_gemm_name() << ")\n";
  LlamaModel& model = *rm.model;
  ResidentParams& params = *rm.params;

  const int max_new = static_cast<int>(cfg.get_int("generate.max_new_tokens"));
  const double temperature = cfg.get_float("generate.temperature");
  const double top_p = cfg.get_float("generate.top_p");
  const bool stop_at_eos = cfg.get_bool("generate.stop_at_eos");
  const std::vector<int64_t> stops = stop_ids(cfg, mc, tok.get(), tmpl);
  Rng rng(static_cast<uint64_t>(cfg.get_int("generate.seed")), 0x6e6);
  const Decoded d = decode_tokens(
      model, params, prompt, max_new, [&](const std::vector<float>& logits) { return pick_token(logits, temperature, top_p, rng); },
      stop_at_eos ? stops : std::vector<int64_t>{});
  const std::vector<int32_t>& out = d.ids;
  const bool stopped = d.stopped;

  // Ids past the tokenizer's vocabulary (a model's padded embedding rows)
  // have no text: the text skips them; --json's ids keep them.
  std::vector<int32_t> known;
  if (tok)
    for (int32_t id : out)
      if (id >= 0 && id < tok->vocab_size()) known.push_back(id);
  const std::string text = tok ? tok->decode(known) : "";
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
