// libFuzzer target: any byte string fed to the safetensors header parser must
// either parse or raise llamaft::Error; anything else (a crash, an
// out-of-bounds read under ASan, another exception) is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = llamaft::io::parse_safetensors_header(data, size, size, "fuzz");
    // A parsed header must describe bytes inside the input.
    for (const auto& t : h.tensors)
      if (h.data_offset + t.end > size) __builtin_trap();
  } catch (const llamaft::Error&) {
  }
  return 0;
}
