// Backend defaults: the batched optimizer ops as loops over the single-buffer ones.
#include "backend/backend.hpp"

#include <vector>

namespace llamaft {

double Backend::sum_squares_many(const float* const* xs, const size_t* ns, int count) {
  double total = 0;
  for (int i = 0; i < count; ++i) total += sum_squares(xs[i], ns[i]);
  return total;
}

double Backend::adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) {
  for (int i = 0; i < count; ++i) adamw(shards[i].p, shards[i].m, shards[i].v, shards[i].g, shards[i].n, a);
  return weights_sum_squares(shards, count);
}

double Backend::weights_sum_squares(const AdamWShard* shards, int count) {
  std::vector<const float*> ps(count);
  std::vector<size_t> ns(count);
  for (int i = 0; i < count; ++i) {
    ps[i] = shards[i].p;
    ns[i] = shards[i].n;
  }
  return sum_squares_many(ps.data(), ns.data(), count);
}

}  // namespace llamaft
