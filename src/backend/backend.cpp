// Backend defaults: the batched optimizer ops as loops over the single-buffer ones.
#include "backend/backend.hpp"

namespace llamaft {

double Backend::sum_squares_many(const float* const* xs, const size_t* ns, int count) {
  double total = 0;
  for (int i = 0; i < count; ++i) total += sum_squares(xs[i], ns[i]);
  return total;
}

void Backend::adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) {
  for (int i = 0; i < count; ++i) adamw(shards[i].p, shards[i].m, shards[i].v, shards[i].g, shards[i].n, a);
}

}  // namespace llamaft
