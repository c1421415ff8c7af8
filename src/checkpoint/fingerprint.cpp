// The fingerprints a checkpoint records to recognise its base model and its
// data (state.hpp): FNV-1a over names, sizes, headers and sampled blocks.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/state.hpp"

namespace fs = std::filesystem;

namespace llamaft {

namespace {

// FNV-1a, 64-bit, printed as 16 hex digits.
struct Fnv1a {
  uint64_t h = 1469598103934665603ull;
  void mix(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

}  // namespace

std::string model_fingerprint(const std::string& model_dir) {
  // config.json and each safetensors file's header and size.
  Fnv1a fnv;
  std::vector<std::string> files = {"config.json"};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec))
    if (e.path().extension() == ".safetensors") files.push_back(e.path().filename().string());
  std::sort(files.begin() + 1, files.end());
  for (const auto& f : files) {
    std::ifstream in(model_dir + "/" + f, std::ios::binary);
    if (!in) continue;
    fnv.mix(f.data(), f.size());
    if (f == "config.json") {
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string s = ss.str();
      fnv.mix(s.data(), s.size());
      continue;
    }
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string header(std::min<uint64_t>(n, 100ull << 20), '\0');
    in.read(header.data(), static_cast<std::streamsize>(header.size()));
    fnv.mix(header.data(), header.size());
    const uint64_t size = fs::file_size(model_dir + "/" + f, ec);
    fnv.mix(&size, sizeof(size));
    // 16 evenly spaced 4 KiB samples of the data: different weights with the
    // same shapes (another seed, another fine-tune) get another fingerprint.
    std::string block(4096, '\0');
    for (int k = 0; k < 16 && size > 8 + n; ++k) {
      const uint64_t data = size - 8 - n;
      in.clear();
      in.seekg(static_cast<std::streamoff>(8 + n + data * k / 16));
      in.read(block.data(), static_cast<std::streamsize>(std::min<uint64_t>(4096, data)));
      fnv.mix(block.data(), static_cast<size_t>(in.gcount()));
    }
  }
  return fnv.hex();
}

std::string data_fingerprint(const std::string& data_path) {
  Fnv1a fnv;
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(data_path, ec)) {
    for (const char* f : {"manifest.json", "index.bin", "tokens.bin", "labels.bin", "docs.bin"}) files.push_back(f);
  } else {
    files.push_back("");
  }
  for (const auto& f : files) {
    const std::string path = f.empty() ? data_path : data_path + "/" + f;
    std::ifstream in(path, std::ios::binary);
    if (!in) continue;
    fnv.mix(f.data(), f.size());
    const uint64_t size = fs::file_size(path, ec);
    fnv.mix(&size, sizeof(size));
    // Small files whole; larger ones by 64 evenly spaced 4 KiB blocks and the last one.
    std::string block(4096, '\0');
    const uint64_t blocks = (size + 4095) / 4096;
    const uint64_t samples = std::min<uint64_t>(blocks, 64);
    for (uint64_t k = 0; k <= samples; ++k) {
      const uint64_t b = k == samples ? (blocks ? blocks - 1 : 0) : (blocks <= 64 ? k : blocks * k / samples);
      if (k == samples && (blocks <= 64 || blocks == 0)) break;
      in.clear();
      in.seekg(static_cast<std::streamoff>(b * 4096));
      in.read(block.data(), 4096);
      fnv.mix(block.data(), static_cast<size_t>(in.gcount()));
    }
  }
  return fnv.hex();
}

}  // namespace llamaft
