#include "model/decode.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"

namespace llamaft {

Decoded decode_tokens(LlamaModel& model, UnitAccess& params, const std::vector<int32_t>& prompt, int max_new,
                      const TokenPicker& pick, const std::vector<int64_t>& stops) {
  // The model boundary: every id that indexes the embedding is checked here,
  // whatever produced it (a tokenizer, --prompt-ids, train.sample_prompts).
  const int64_t vocab = model.config().vocab_size;
  LLAMAFT_REQUIRE(!prompt.empty(), "generate: the prompt has no tokens");
  for (size_t i = 0; i < prompt.size(); ++i)
    LLAMAFT_REQUIRE(prompt[i] >= 0 && prompt[i] < vocab, "generate: prompt token ", i, " has id ", prompt[i],
                    ", outside the model's vocabulary [0, ", vocab, ") (a tokenizer that does not match the model?)");
  LLAMAFT_REQUIRE(max_new >= 0, "generate: max_new_tokens must not be negative, got ", max_new);
  Decoded out;
  model.reset_cache(static_cast<int>(prompt.size()) + max_new);
  std::vector<float> logits = model.decode(prompt.data(), static_cast<int>(prompt.size()), params);
  for (int i = 0; i < max_new; ++i) {
    const int32_t next = pick(logits);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
      out.stopped = true;
      break;
    }
    out.ids.push_back(next);
    if (i + 1 < max_new) logits = model.decode(&next, 1, params);
  }
  return out;
}

int32_t pick_token(const std::vector<float>& logits, double temperature, double top_p, Rng& rng) {
  if (temperature <= 0.0) return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += p[i] = std::exp((logits[i] - mx) / temperature);
  std::vector<int32_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
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

}  // namespace llamaft
