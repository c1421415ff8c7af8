// Runs the fuzz harness without libFuzzer, so any compiler and CI exercise
// it: built-in seeds (valid and malformed headers), then N deterministic
// mutations (bit flips, truncations, length-field edits, byte splices,
// inserted JSON tokens), then any files named on the command line (to replay
// a crash that libFuzzer saved). Exit 0 means no crash.
// Usage: fuzz_safetensors_replay [iterations=20000] [file...]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
using Bytes = std::vector<uint8_t>;

Bytes file_with(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  s += header;
  s.append(data_bytes, '?');
  return Bytes(s.begin(), s.end());
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<Bytes> seeds() {
  return {
      file_with(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 16),
      file_with(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
                R"("v":{"dtype":"F16","shape":[1,2],"data_offsets":[6,10]}})", 10),
      file_with(R"({"z":{"dtype":"BOOL","shape":[0],"data_offsets":[0,0]},"q":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}   )", 8),
      file_with(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16),
      file_with(R"({"a":{"dtype":"F64","shape":[4611686018427387904,0],"data_offsets":[0,0]}})", 0),
      file_with(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[4,0]}})", 4),
      file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
      file_with(R"({"a":{"dtype":"F32","dtype":"F32","shape":[[[[1]]]],"data_offsets":[-1,1e400]}})", 4),
      file_with(R"({"__metadata__":{"k":{"n":[1,{"x":null}]}}})", 0),
      file_with("{\"\xff\xfe\":{}, \"\xed\xa0\x80\":1, \"\xf4\x90\x80\x80\":2}", 0),
      file_with("[1,2,3]", 0),
      file_with("{\"a\":" + std::string(2000, '[') + std::string(2000, ']') + "}", 0),
      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
      {0x02, 0, 0, 0, 0, 0, 0, 0, '{', '}'},
      {},
  };
}

const char* const kTokens[] = {"{", "}", "[", "]", ",", ":", "\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"",
                               "\"F32\"", "\"BF16\"", "\"__metadata__\"", "-1", "18446744073709551615",
                               "1e999", "null", "\\u0000", "\xc3\xa9", "\xe2\x82"};

void mutate(Bytes& m, const std::vector<Bytes>& all, uint64_t& state) {
  const uint64_t r = splitmix(state);
  switch (r % 7) {
    case 0:  // flip a bit
      if (!m.empty()) m[(r >> 8) % m.size()] ^= static_cast<uint8_t>(1u << ((r >> 40) % 8));
      break;
    case 1:  // truncate
      if (!m.empty()) m.resize((r >> 8) % m.size());
      break;
    case 2:  // overwrite one byte of the length field
      if (m.size() >= 8) m[(r >> 8) % 8] = static_cast<uint8_t>(r >> 16);
      break;
    case 3:  // nudge the length field by a small amount
      if (m.size() >= 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | m[i];
        n += static_cast<uint64_t>(static_cast<int64_t>((r >> 8) % 33) - 16);
        for (int i = 0; i < 8; ++i) m[i] = static_cast<uint8_t>(n >> (8 * i));
      }
      break;
    case 4: {  // splice a run of bytes from another seed
      const Bytes& o = all[(r >> 8) % all.size()];
      if (!o.empty() && !m.empty()) {
        const size_t at = (r >> 16) % m.size(), from = (r >> 32) % o.size();
        for (size_t i = 0; i < 8 && at + i < m.size() && from + i < o.size(); ++i) m[at + i] = o[from + i];
      }
      break;
    }
    case 5: {  // insert a JSON token
      const std::string tok = kTokens[(r >> 8) % (sizeof(kTokens) / sizeof(kTokens[0]))];
      const size_t at = m.empty() ? 0 : (r >> 16) % (m.size() + 1);
      m.insert(m.begin() + static_cast<std::ptrdiff_t>(at), tok.begin(), tok.end());
      break;
    }
    default:  // append junk
      m.push_back(static_cast<uint8_t>(r >> 8));
      break;
  }
}
}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Bytes> all = seeds();
  uint64_t state = 12345;
  long runs = 0;
  for (const auto& s : all) {
    LLVMFuzzerTestOneInput(s.data(), s.size());
    ++runs;
  }
  for (long it = 0; it < iterations; ++it) {
    Bytes m = all[static_cast<size_t>(it) % all.size()];
    const int edits = 1 + static_cast<int>(splitmix(state) % 4);
    for (int e = 0; e < edits; ++e) mutate(m, all, state);
    LLVMFuzzerTestOneInput(m.data(), m.size());
    ++runs;
  }
  for (int i = 2; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "fuzz replay: cannot read %s\n", argv[i]);
      return 1;
    }
    const Bytes b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(b.data(), b.size());
    ++runs;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fuzz replay: %ld inputs in %.2f s, no crash\n", runs, secs);
  return 0;
}
