// Parameter sources besides Fsdp: the UnitAccess default and
// ResidentParams (every unit whole in one process: eval, generate, merge, the reference dumps).
#include "model/llama.hpp"

#include "core/error.hpp"

namespace llamaft {

const bf16* UnitAccess::params_bf16(int unit) {
  LLAMAFT_FAIL("unit ", unit, ": this parameter source holds fp32 only; a bf16-storage model needs bf16 params");
}

ResidentParams::ResidentParams(Backend& be, const ParamLayout& layout) : be_(be) {
  for (const auto& u : layout.units()) params_.emplace_back(be, static_cast<size_t>(u.numel));
  grads_.resize(params_.size());
}

float* ResidentParams::grads(int unit) {
  if (grads_[unit].size() != params_[unit].size()) {
    grads_[unit].resize(be_, params_[unit].size());
    be_.fill(grads_[unit].data(), 0.f, grads_[unit].size());
  }
  return grads_[unit].data();
}

void ResidentParams::round_copies_to_bf16() {
  half_.clear();
  half_.resize(params_.size());
  for (size_t u = 0; u < params_.size(); ++u) {
    const size_t n = params_[u].size();
    half_[u].resize(be_, n + (n & 1));  // pack_bf16 writes whole words
    be_.pack_bf16(params_[u].data(), reinterpret_cast<float*>(half_[u].data()), n);
  }
}

const bf16* ResidentParams::params_bf16(int unit) {
  LLAMAFT_REQUIRE(static_cast<size_t>(unit) < half_.size(), "unit ", unit,
                  ": no bf16 copy of the resident parameters (round_copies_to_bf16 was not called)");
  return half_[unit].data();
}

void ResidentParams::zero_grads() {
  for (size_t u = 0; u < grads_.size(); ++u)
    if (grads_[u].size()) be_.fill(grads_[u].data(), 0.f, grads_[u].size());
}

}  // namespace llamaft
