// Token ids typed by users (generate --prompt-ids, --stop-ids,
// train.sample_prompts): one parser with one set of rules. Items are
// comma-separated integers in [0, vocab); blanks around items are allowed,
// anything else ("12x", "", "-1") is an error naming `what` and the item.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llamaft {

std::vector<int32_t> parse_token_ids(const std::string& text, int64_t vocab, const std::string& what);
// Several id lists separated by ';' ("1,12,13;1,15"); empty lists are skipped.
std::vector<std::vector<int32_t>> parse_token_id_lists(const std::string& text, int64_t vocab,
                                                       const std::string& what);

}  // namespace llamaft
