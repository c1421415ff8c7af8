// TensorBoard event files, written natively: TFRecord framing (length,
// masked CRC-32C of the length, payload, masked CRC-32C of the payload)
// around hand-encoded Event/Summary protobuf messages with scalar values.
// metrics.jsonl stays the source of truth; this is for users' dashboards.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace llamaft {

uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  // Creates dir (and parents) and dir/events.out.tfevents.<time>.<host>.llamaft.
  explicit TensorBoardWriter(const std::string& dir);
  void scalar(const std::string& tag, double value, int64_t step);
  void flush() { out_.flush(); }
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

}  // namespace llamaft
