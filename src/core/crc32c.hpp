// CRC-32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, RFC 3720), the
// checksum of checkpoint blocks: the SSE4.2 `crc32` instruction where the CPU
// has it (detected once), else an 8-bit table; both give the same values.
// crc32c_combine joins the checksums of two adjacent byte ranges without
// their bytes (zlib's crc32_combine, for this polynomial), so ranks that each
// hold part of a block can checksum it together.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llamaft {

// The CRC of `crc`'s bytes followed by [data, data + n); crc32c(0, ...) starts.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }
// crc(A || B) from crc(A), crc(B) and B's length.
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
// True when the hardware instruction is used.
bool crc32c_hardware();

}  // namespace llamaft
