// Token-by-token decoding with the KV cache, shared by `generate` and the
// samples `train` writes into metrics.jsonl: prefill the prompt, then pick
// and feed one token at a time until a stop token or max_new tokens. The
// picker sees each step's logits (host, V floats); it may also make ranks
// agree on the token (train broadcasts rank 0's).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/rng.hpp"
#include "model/llama.hpp"

namespace llamaft {

using TokenPicker = std::function<int32_t(const std::vector<float>& logits)>;

struct Decoded {
  std::vector<int32_t> ids;  // generated tokens, the stop token excluded
  bool stopped = false;      // ended at a stop token
};

// `stops` empty: never stops early.
Decoded decode_tokens(LlamaModel& model, UnitAccess& params, const std::vector<int32_t>& prompt, int max_new,
                      const TokenPicker& pick, const std::vector<int64_t>& stops);

// Greedy (the first largest logit) at temperature 0; otherwise temperature
// then top-p (the smallest prefix of the sorted distribution whose mass
// reaches top_p, at least one token) from `rng`.
int32_t pick_token(const std::vector<float>& logits, double temperature, double top_p, Rng& rng);

}  // namespace llamaft
