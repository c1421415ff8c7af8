// Runs the fuzz harness without libFuzzer: built-in seeds (valid and
// malformed headers), then N deterministic mutations of each (bit flips,
// truncations, length-field edits, byte splices). Exit 0 means no crash.
// Usage: fuzz_safetensors_replay [iterations=20000]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
std::vector<uint8_t> file_with(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  s += header;
  s.append(data_bytes, '?');
  return std::vector<uint8_t>(s.begin(), s.end());
}
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
  std::vector<std::vector<uint8_t>> seeds = {
      file_with(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 16),
      file_with(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
                R"("v":{"dtype":"F16","shape":[1,2],"data_offsets":[6,10]}})", 10),
      file_with(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16),
      file_with(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[4,0]}})", 4),
      file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
      file_with("{\"\xff\xfe\":{}}", 0),
      file_with("[1,2,3]", 0),
      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
      {},
  };
  uint64_t state = 12345;
  long runs = 0;
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(s.data(), s.size());
    ++runs;
  }
  for (long it = 0; it < iterations; ++it) {
    std::vector<uint8_t> m = seeds[it % seeds.size()];
    const int edits = 1 + static_cast<int>(splitmix(state) % 4);
    for (int e = 0; e < edits; ++e) {
      const uint64_t r = splitmix(state);
      switch (r % 5) {
        case 0:  // flip a bit
          if (!m.empty()) m[(r >> 8) % m.size()] ^= static_cast<uint8_t>(1u << ((r >> 40) % 8));
          break;
        case 1:  // truncate
          if (!m.empty()) m.resize((r >> 8) % m.size());
          break;
        case 2:  // rewrite the length field
          if (m.size() >= 8) m[(r >> 8) % 8] = static_cast<uint8_t>(r >> 16);
          break;
        case 3: {  // splice bytes from another seed
          const auto& o = seeds[(r >> 8) % seeds.size()];
          if (!o.empty() && !m.empty()) {
            const size_t at = (r >> 16) % m.size(), from = (r >> 32) % o.size();
            for (size_t i = 0; i < 8 && at + i < m.size() && from + i < o.size(); ++i) m[at + i] = o[from + i];
          }
          break;
        }
        default:  // append junk
          m.push_back(static_cast<uint8_t>(r >> 8));
          break;
      }
    }
    LLVMFuzzerTestOneInput(m.data(), m.size());
    ++runs;
  }
  std::printf("fuzz replay: %ld inputs, no crash\n", runs);
  return 0;
}
