#include "core/util.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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

std::string partial_path(const std::string& path) { return path + ".partial"; }

void require_output_folder(const std::string& dir, bool force, const std::string& command,
                           const std::vector<std::string>& protected_dirs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& p : protected_dirs)
    LLAMAFT_REQUIRE(p.empty() || !fs::equivalent(dir, p, ec), command, ": --output '", dir, "' is the input folder '",
                    p, "'; writing there would overwrite it (choose another folder)");
  const auto st = fs::status(dir, ec);
  if (!fs::exists(st)) return;
  LLAMAFT_REQUIRE(fs::is_directory(st), command, ": --output '", dir, "' exists and is not a folder");
  const bool empty = fs::is_empty(dir, ec);
  LLAMAFT_REQUIRE(empty || force, command, ": --output '", dir, "' already exists and is not empty; pass --force to "
                  "replace the model in it, or choose a new folder");
}

void fsync_path(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LLAMAFT_REQUIRE(fd >= 0, "cannot open '", path, "' to fsync: ", std::strerror(errno));
  const int rc = fsync(fd);
  const int err = errno;
  ::close(fd);
  LLAMAFT_REQUIRE(rc == 0, "fsync of '", path, "' failed: ", std::strerror(err));
}

namespace {
std::string parent_of(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}
}  // namespace

void commit_partial(const std::string& path) {
  const std::string partial = partial_path(path);
  LLAMAFT_REQUIRE(std::rename(partial.c_str(), path.c_str()) == 0, "cannot rename '", partial, "' to '", path,
                  "': ", std::strerror(errno));
  fsync_path(parent_of(path));
}

void write_file_durably(const std::string& path, const std::string& content) {
  const std::string partial = partial_path(path);
  const int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LLAMAFT_REQUIRE(fd >= 0, "cannot create '", partial, "': ", std::strerror(errno));
  const char* p = content.data();
  size_t left = content.size();
  int err = 0;
  while (left > 0 && !err) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = n < 0 ? errno : ENOSPC;
    else p += n, left -= static_cast<size_t>(n);
  }
  if (!err && fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (err) {
    ::unlink(partial.c_str());
    LLAMAFT_FAIL("writing '", path, "' failed: ", std::strerror(err), "; nothing was written under that name");
  }
  commit_partial(path);
}

namespace {

// The one loop behind pread_full and pwrite_full: EINTR and short counts
// retried, at most 1 GiB per call; returns 0, the errno, or -1 when the call
// moved nothing (end of file).
template <typename Byte, typename Call>
int positional_full(Byte* p, size_t n, uint64_t offset, uint64_t* done, Call call) {
  uint64_t moved = 0;
  int rc = 0;
  while (moved < n) {
    const ssize_t got = call(p + moved, std::min<size_t>(n - moved, size_t{1} << 30),
                             static_cast<off_t>(offset + moved));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      rc = got < 0 ? errno : -1;
      break;
    }
    moved += static_cast<uint64_t>(got);
  }
  if (done) *done = moved;
  return rc;
}

}  // namespace

int pread_full(int fd, void* dst, size_t n, uint64_t offset, uint64_t* done) {
  return positional_full(static_cast<char*>(dst), n, offset, done,
                         [fd](char* p, size_t k, off_t at) { return ::pread(fd, p, k, at); });
}

int pwrite_full(int fd, const void* src, size_t n, uint64_t offset, uint64_t* done) {
  return positional_full(static_cast<const char*>(src), n, offset, done,
                         [fd](const char* p, size_t k, off_t at) { return ::pwrite(fd, p, k, at); });
}

void advise_willneed(int fd, uint64_t offset, uint64_t n) {
  constexpr uint64_t kPiece = uint64_t{4} << 20;
  for (uint64_t off = offset, end = offset + n; off < end; off += kPiece)
    (void)::posix_fadvise(fd, static_cast<off_t>(off), static_cast<off_t>(std::min(kPiece, end - off)),
                          POSIX_FADV_WILLNEED);
}

}  // namespace llamaft
