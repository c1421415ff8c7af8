#include "data/token_ids.hpp"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

std::vector<int32_t> parse_token_ids(const std::string& text, int64_t vocab, const std::string& what) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    LLAMAFT_REQUIRE(!item.empty(), what, ": empty item in '", text, "' (expected comma-separated token ids)");
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    LLAMAFT_REQUIRE(errno == 0 && *end == '\0', what, ": '", item, "' is not an integer token id");
    LLAMAFT_REQUIRE(v >= 0 && v < vocab, what, ": token id ", v, " is outside the vocabulary [0, ", vocab, ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  LLAMAFT_REQUIRE(!ids.empty(), what, ": no token ids given");
  return ids;
}

std::vector<std::vector<int32_t>> parse_token_id_lists(const std::string& text, int64_t vocab,
                                                       const std::string& what) {
  std::vector<std::vector<int32_t>> lists;
  std::stringstream ss(text);
  for (std::string one; std::getline(ss, one, ';');)
    if (one.find_first_not_of(" \t") != std::string::npos) lists.push_back(parse_token_ids(one, vocab, what));
  return lists;
}

}  // namespace llamaft
