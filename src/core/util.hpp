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
// An output folder a command is about to write (init, merge): refused when
// it is a file, or holds anything while `force` (--force) is false, or is one
// of `protected_dirs` (the command's inputs, compared as files, not as
// spellings) even with force.
void require_output_folder(const std::string& dir, bool force, const std::string& command,
                           const std::vector<std::string>& protected_dirs = {});

// Durable, atomic files (exports, adapters, merged models): write under
// partial_path(path), fsync, then commit_partial() renames it into place and
// fsyncs the folder. A crash or a full disk leaves either the old file or
// none, never a half-written one under the real name.
std::string partial_path(const std::string& path);  // path + ".partial"
void commit_partial(const std::string& path);
void fsync_path(const std::string& path);  // a file or a folder
// The whole sequence for a small text file (config.json, adapter_config.json).
void write_file_durably(const std::string& path, const std::string& content);

// Whole-range positional I/O, retried on EINTR and short counts. 0 when all
// n bytes moved; otherwise -1 (pread: the file ended; pwrite: a write made
// no progress) or the errno of the failing call. *done, when given, is the
// byte count moved before it stopped.
int pread_full(int fd, void* dst, size_t n, uint64_t offset, uint64_t* done = nullptr);
int pwrite_full(int fd, const void* src, size_t n, uint64_t offset, uint64_t* done = nullptr);
// Asks the kernel to read [offset, offset + n) ahead, in 4 MiB pieces: Linux
// caps one POSIX_FADV_WILLNEED at the device's readahead size
// (force_page_cache_ra), so one call over a large range reads only its first
// few megabytes. Advisory; never fails.
void advise_willneed(int fd, uint64_t offset, uint64_t n);

}  // namespace llamaft
