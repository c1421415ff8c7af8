// Fuzz inputs that stand for several files at once (a prepared split's five
// files, an adapter's config and tensors): sections, each a little-endian
// uint32 length and that many bytes; a length past the end takes what is
// left, and missing sections are empty. One byte string, so libFuzzer and
// the replay driver mutate all the files together.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace fuzz {

using Bytes = std::vector<uint8_t>;

inline std::vector<Bytes> split_sections(const uint8_t* data, size_t size, size_t count) {
  std::vector<Bytes> out(count);
  size_t at = 0;
  for (size_t s = 0; s < count && at < size; ++s) {
    uint32_t n = 0;
    for (int i = 0; i < 4 && at < size; ++i) n |= static_cast<uint32_t>(data[at++]) << (8 * i);
    const size_t take = std::min<size_t>(n, size - at);
    out[s].assign(data + at, data + at + take);
    at += take;
  }
  return out;
}

inline Bytes join_sections(const std::vector<Bytes>& sections) {
  Bytes out;
  for (const auto& s : sections) {
    const uint32_t n = static_cast<uint32_t>(s.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}

inline Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

template <typename T>
Bytes pod_array(const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  return Bytes(p, p + v.size() * sizeof(T));
}

// Writes `bytes` to `path`; an empty optional section may be left absent.
inline void write_file(const std::string& path, const Bytes& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) __builtin_trap();
  std::fclose(f);
}

// A scratch folder for this process (under /dev/shm when it exists).
std::string scratch_dir(const std::string& name);

// The replay driver's seeds and section count, from the harness.
std::vector<Bytes> seeds();
size_t section_count();

}  // namespace fuzz
