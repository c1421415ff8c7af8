#include "core/util.hpp"

#include <filesystem>

#include "core/error.hpp"

namespace llamaft {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

void make_directories(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LLAMAFT_REQUIRE(!ec, "cannot create directory '", dir, "': ", ec.message());
}

}  // namespace llamaft
