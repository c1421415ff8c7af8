#include "unit/flat_unit.hpp"

#include "core/error.hpp"

namespace llamaft {

const TensorSlot& Unit::slot(const std::string& suffix) const {
  for (const auto& t : tensors)
    if (t.hf_name.size() >= suffix.size() &&
        t.hf_name.compare(t.hf_name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return t;
  LLAMAFT_CHECK(false, "unit ", name, " has no tensor ending in ", suffix);
}

}  // namespace llamaft
