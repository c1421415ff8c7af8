#include "train/tensorboard.hpp"

#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {

// Protobuf wire format, just what Event and Summary need.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire) { put_varint(out, static_cast<uint64_t>(field) << 3 | wire); }
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
template <typename T>
void put_fixed(std::string& out, int field, int wire, T v) {
  put_key(out, field, wire);
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // little-endian hosts only, as the rest of llamaft
  out.append(buf, sizeof(T));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static uint32_t table[256] = {0};
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_directories(dir);
  path_ = str_cat(dir, "/events.out.tfevents.", static_cast<int64_t>(now_seconds()), ".", process_host(), ".llamaft");
  out_.open(path_, std::ios::binary | std::ios::app);
  LLAMAFT_REQUIRE(out_.good(), "tensorboard: cannot write '", path_, "'");
  std::string event;  // the file-version header event every reader expects first
  put_fixed(event, 1, 1, now_seconds());
  put_bytes(event, 3, "brain.Event:2");
  write_event(event);
}

void TensorBoardWriter::scalar(const std::string& tag, double value, int64_t step) {
  std::string v;  // Summary.Value { tag = 1; simple_value = 2 }
  put_bytes(v, 1, tag);
  put_fixed(v, 2, 5, static_cast<float>(value));
  std::string summary;  // Summary { repeated Value value = 1 }
  put_bytes(summary, 1, v);
  std::string event;  // Event { wall_time = 1; step = 2; summary = 5 }
  put_fixed(event, 1, 1, now_seconds());
  put_key(event, 2, 0);
  put_varint(event, static_cast<uint64_t>(step));
  put_bytes(event, 5, summary);
  write_event(event);
}

void TensorBoardWriter::write_event(const std::string& event) {
  const uint64_t len = event.size();
  char header[12];
  std::memcpy(header, &len, 8);
  const uint32_t len_crc = masked_crc32c(header, 8);
  std::memcpy(header + 8, &len_crc, 4);
  const uint32_t data_crc = masked_crc32c(event.data(), event.size());
  out_.write(header, 12);
  out_.write(event.data(), static_cast<std::streamsize>(event.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
  LLAMAFT_REQUIRE(out_.good(), "tensorboard: write to '", path_, "' failed");
}

}  // namespace llamaft
