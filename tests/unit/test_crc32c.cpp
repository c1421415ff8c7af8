// CRC-32C against RFC 3720's published vectors (B.4) and the "123456789"
// check value of the CRC catalogue; the hardware and table paths agree; and
// crc32c_combine equals the checksum of the joined bytes at every split.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/crc32c.hpp"

namespace llamaft {
namespace {

TEST(Crc32c, PublishedVectors) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32), dec(32);
  std::iota(inc.begin(), inc.end(), 0);
  for (int i = 0; i < 32; ++i) dec[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec.data(), 32), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, ExtendAndCombineEqualTheWhole) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(5000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  const uint32_t whole = crc32c(buf.data(), buf.size());
  for (size_t split : {0ul, 1ul, 7ul, 8ul, 9ul, 1000ul, 4096ul, 4999ul, 5000ul}) {
    const uint32_t a = crc32c(buf.data(), split), b = crc32c(buf.data() + split, buf.size() - split);
    EXPECT_EQ(crc32c_extend(a, buf.data() + split, buf.size() - split), whole) << split;
    EXPECT_EQ(crc32c_combine(a, b, buf.size() - split), whole) << split;
  }
  // Three parts, combined left to right, as a checkpoint block split over ranks.
  const uint32_t p0 = crc32c(buf.data(), 100), p1 = crc32c(buf.data() + 100, 2900),
                 p2 = crc32c(buf.data() + 3000, 2000);
  EXPECT_EQ(crc32c_combine(crc32c_combine(p0, p1, 2900), p2, 2000), whole);
}

}  // namespace
}  // namespace llamaft
