// Small shared helpers: tensor shapes in messages, and creating folders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llamaft {

// "[384, 128]"
std::string shape_str(const std::vector<int64_t>& shape);
// mkdir -p; a failure is a user error naming the folder.
void make_directories(const std::string& dir);

}  // namespace llamaft
