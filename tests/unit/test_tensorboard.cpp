// CRC-32C against the published check value, and the TFRecord framing of an
// event file read back byte by byte (the real TensorBoard reader is in
// tests/mpi/check_tensorboard.py).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "train/tensorboard.hpp"

namespace llamaft {
namespace {

TEST(TensorBoard, Crc32cCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C "check" value (RFC 3720)
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(TensorBoard, RecordsAreFramedWithMaskedCrcs) {
  const std::string dir = ::testing::TempDir() + "/tb_unit";
  std::string path;
  {
    TensorBoardWriter w(dir);
    w.scalar("train/loss", 1.5, 7);
    path = w.path();
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  int records = 0;
  while (pos < bytes.size()) {
    ASSERT_LE(pos + 12, bytes.size());
    uint64_t len;
    uint32_t len_crc, data_crc;
    std::memcpy(&len, bytes.data() + pos, 8);
    std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, masked_crc32c(bytes.data() + pos, 8));
    ASSERT_LE(pos + 12 + len + 4, bytes.size());
    std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, masked_crc32c(bytes.data() + pos + 12, len));
    pos += 12 + len + 4;
    ++records;
  }
  EXPECT_EQ(records, 2);  // the file-version event, then the scalar
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  EXPECT_NE(bytes.find("train/loss"), std::string::npos);
}

}  // namespace
}  // namespace llamaft
