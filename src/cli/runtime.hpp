// Settings shared by the commands: threads and the backend.
#pragma once

#include <memory>

#include "backend/backend.hpp"
#include "config/config.hpp"

namespace llamaft {

void apply_runtime_settings(const Config& cfg);
std::unique_ptr<Backend> make_backend(const Config& cfg);

}  // namespace llamaft
