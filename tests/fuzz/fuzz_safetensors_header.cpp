// libFuzzer target: any byte string fed to the safetensors header parser must
// either parse or raise llamaft::Error; anything else (a crash, an
// out-of-bounds read under ASan, UB under UBSan, another exception type) is
// a bug. A header that parses must also satisfy the layout invariants.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = llamaft::io::parse_safetensors_header(data, size, size, "fuzz");
    uint64_t expect = 0;
    for (const auto& t : h.tensors) {
      // Contiguous from 0, sized by shape x dtype, inside the input, findable.
      if (t.begin != expect || t.end < t.begin || h.data_offset + t.end > size) __builtin_trap();
      if (static_cast<uint64_t>(t.numel()) * llamaft::io::dtype_size(t.dtype) != t.end - t.begin) __builtin_trap();
      if (h.find(t.name) != &t) __builtin_trap();
      expect = t.end;
    }
    if (h.data_offset + expect != size) __builtin_trap();
  } catch (const llamaft::Error&) {
  }
  return 0;
}
