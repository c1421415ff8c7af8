// Runs a sectioned fuzz harness (fuzz_sections.hpp) without libFuzzer, as
// replay_main.cpp does for the safetensors header: the harness's built-in
// seeds, then N deterministic mutations, then any files named on the command
// line (inputs a libFuzzer run saved). A mutation edits one section: bit
// flips, truncation, int32/int64 fields overwritten with edge values (-100,
// -1, 0, vocab-sized, INT32_MIN/MAX, 2^40), byte splices from other seeds,
// inserted JSON tokens, or a section swapped for another seed's. The harness
// traps on anything but a clean llamaft::Error, so exit 0 means no crash.
// Usage: <harness>_replay [iterations=20000] [file...]
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_sections.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fuzz {

static std::vector<std::string> g_scratch;  // removed when the replay ends

std::string scratch_dir(const std::string& name) {
  struct stat st;
  const std::string root = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  const std::string dir = root + "/llamaft-fuzz-" + name + "-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  g_scratch.push_back(dir);
  return dir;
}

}  // namespace fuzz

namespace {
using fuzz::Bytes;

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

const int64_t kEdgeValues[] = {-100, -101, -1, 0, 1, 2, 3, 511, 512, 999, 1000, 1024, 4096, 32000, 128256,
                               INT32_MAX, INT32_MIN, int64_t{1} << 40, -(int64_t{1} << 40), INT64_MAX};
const char* const kTokens[] = {"{", "}", "[", "]", ",", ":", "\"", "null", "true", "-1", "1e999", "0.5", "[]", "{}",
                               "\"q_proj\"", "\"v_proj\"", "\"r\"", "\"splits\"", "\"train\"", "\"val\"", "\"seq_len\"",
                               "\"format\"", "\"run_id\"", "\"F32\"", "\"BF16\"", "\xc3\xa9", "\xff"};

void mutate(Bytes& s, const std::vector<std::vector<Bytes>>& all, size_t section, uint64_t& state) {
  const uint64_t r = splitmix(state);
  switch (r % 8) {
    case 0:  // flip a bit
      if (!s.empty()) s[(r >> 8) % s.size()] ^= static_cast<uint8_t>(1u << ((r >> 40) % 8));
      break;
    case 1:  // truncate
      if (!s.empty()) s.resize((r >> 8) % s.size());
      break;
    case 2:    // an aligned int32 or int64 field set to an edge value
    case 3: {
      const size_t width = (r >> 8) & 1 ? 8 : 4;
      if (s.size() < width) break;
      const size_t at = ((r >> 16) % (s.size() / width)) * width;
      const int64_t v = kEdgeValues[(r >> 40) % (sizeof(kEdgeValues) / sizeof(kEdgeValues[0]))];
      std::memcpy(s.data() + at, &v, width);  // little-endian: the low bytes for int32
      break;
    }
    case 4: {  // splice bytes from the same section of another seed
      const Bytes& o = all[(r >> 8) % all.size()][section];
      if (!o.empty() && !s.empty()) {
        const size_t at = (r >> 16) % s.size(), from = (r >> 32) % o.size();
        for (size_t i = 0; i < 16 && at + i < s.size() && from + i < o.size(); ++i) s[at + i] = o[from + i];
      }
      break;
    }
    case 5: {  // insert a JSON token
      const std::string tok = kTokens[(r >> 8) % (sizeof(kTokens) / sizeof(kTokens[0]))];
      const size_t at = s.empty() ? 0 : (r >> 16) % (s.size() + 1);
      s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), tok.begin(), tok.end());
      break;
    }
    case 6:  // the section of another seed
      s = all[(r >> 8) % all.size()][section];
      break;
    default:  // append junk
      s.push_back(static_cast<uint8_t>(r >> 8));
      break;
  }
}
}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
  const auto start = std::chrono::steady_clock::now();
  const size_t count = fuzz::section_count();
  std::vector<std::vector<Bytes>> all;
  for (const auto& seed : fuzz::seeds()) all.push_back(fuzz::split_sections(seed.data(), seed.size(), count));
  uint64_t state = 12345;
  long runs = 0;
  for (const auto& seed : fuzz::seeds()) {
    LLVMFuzzerTestOneInput(seed.data(), seed.size());
    ++runs;
  }
  for (long it = 0; it < iterations; ++it) {
    std::vector<Bytes> m = all[static_cast<size_t>(it) % all.size()];
    const int edits = 1 + static_cast<int>(splitmix(state) % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t section = splitmix(state) % count;
      mutate(m[section], all, section, state);
    }
    Bytes joined = fuzz::join_sections(m);
    if (splitmix(state) % 16 == 0 && !joined.empty()) joined.resize(splitmix(state) % joined.size());  // the framing too
    LLVMFuzzerTestOneInput(joined.data(), joined.size());
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
  for (const auto& dir : fuzz::g_scratch) std::filesystem::remove_all(dir);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fuzz replay: %ld inputs in %.2f s, no crash\n", runs, secs);
  return 0;
}
