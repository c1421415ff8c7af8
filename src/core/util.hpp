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

// Durable, atomic files (exports, adapters, merged models): write under
// partial_path(path), fsync, then commit_partial() renames it into place and
// fsyncs the folder. A crash or a full disk leaves either the old file or
// none, never a half-written one under the real name.
std::string partial_path(const std::string& path);  // path + ".partial"
void commit_partial(const std::string& path);
void fsync_path(const std::string& path);  // a file or a folder
// The whole sequence for a small text file (config.json, adapter_config.json).
void write_file_durably(const std::string& path, const std::string& content);

}  // namespace llamaft
