// `llamaft tokenize`: encodes each input line (raw bytes, or a JSON string per
// line with --json-lines) and prints one JSON line {"ids": [...]} per input;
// --decode prints the round trip too. The tokenizer tests drive it.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "data/tokenizer.hpp"

namespace llamaft {

int run_tokenize(const Config& cfg) {
  const std::string tok_path = cfg.get_string("model.tokenizer");
  auto tok = load_tokenizer(tok_path, cfg.get_string("model.path"));
  LLAMAFT_REQUIRE(tok, "tokenize: no tokenizer found; pass --tokenizer PATH");
  const std::string input = cfg.get_string("tokenize.input");
  std::ifstream in(input, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "tokenize: cannot open '", input, "'");
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
