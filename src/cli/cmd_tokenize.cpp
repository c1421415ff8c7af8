// `llamaft tokenize`: encodes each input line (raw bytes, or a JSON string per
// line with --json-lines) and prints one JSON line {"ids": [...]} per input;
// --decode prints the round trip too; --chat renders conversations with a chat
// template (ids and labels). The tokenizer and template tests drive it.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "data/templates.hpp"
#include "data/tokenizer.hpp"

namespace llamaft {

namespace {

// --chat: one conversation per line, {"messages": [{"role", "content"}, ...]}
// or the bare list; prints {"ids", "labels"} as the chat template renders it
// (labels -100 outside the trained turns, as `prepare` masks them).
int tokenize_chats(const Config& cfg, const Tokenizer& tok, std::ifstream& in, const std::string& input,
                   const std::string& tok_path) {
  const std::string dir = !tok_path.empty()
                              ? (tok_path.find('/') == std::string::npos ? "." : tok_path.substr(0, tok_path.rfind('/')))
                              : cfg.get_string("model.path");
  const ChatTemplate tmpl = resolve_template(cfg.get_string("tokenize.template"), dir, "none", "tokenize");
  std::cerr << "tokenize: template " << tmpl.describe() << "\n";
  const bool gen = cfg.get_bool("tokenize.add_generation_prompt");
  const bool train_on_prompt = cfg.get_bool("prepare.train_on_prompt");
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::vector<Message> msgs;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      const nlohmann::json& list = j.is_object() ? j.at("messages") : j;
      LLAMAFT_REQUIRE(list.is_array(), "expected a list of messages");
      for (const auto& m : list) msgs.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    } catch (const nlohmann::json::exception& e) {
      LLAMAFT_FAIL(input, ":", lineno, ": expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} (", e.what(), ")");
    }
    const Rendered r = render_chat(tok, tmpl, msgs, train_on_prompt, gen);
    std::cout << nlohmann::json({{"ids", r.ids}, {"labels", r.labels}}).dump() << "\n";
  }
  return 0;
}

}  // namespace

int run_tokenize(const Config& cfg) {
  const std::string tok_path = cfg.get_string("model.tokenizer");
  auto tok = load_tokenizer(tok_path, cfg.get_string("model.path"));
  LLAMAFT_REQUIRE(tok, "tokenize: no tokenizer found; pass --tokenizer PATH");
  const std::string input = cfg.get_string("tokenize.input");
  std::ifstream in(input, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "tokenize: cannot open '", input, "'");
  if (cfg.get_bool("tokenize.chat")) return tokenize_chats(cfg, *tok, in, input, tok_path);
  const bool json_lines = cfg.get_bool("tokenize.json_lines");
  const bool bos = cfg.get_bool("tokenize.bos");
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string text = line;
    if (json_lines) {
      try {
        text = nlohmann::json::parse(line).get<std::string>();
      } catch (const std::exception& e) {
        LLAMAFT_FAIL(input, ":", lineno, ": expected a JSON string (", e.what(), ")");
      }
    }
    std::vector<int32_t> ids = tok->encode(text);
    if (bos) ids.insert(ids.begin(), tok->bos_id());
    nlohmann::json j = {{"ids", ids}};
    if (cfg.get_bool("tokenize.decode"))
      j["decoded"] = tok->decode(std::vector<int32_t>(ids.begin() + (bos ? 1 : 0), ids.end()));
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}

}  // namespace llamaft
