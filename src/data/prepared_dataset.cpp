#include "data/prepared_dataset.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace llamaft {

namespace {
template <typename T>
std::vector<T> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  LLAMAFT_REQUIRE(in.good(), "prepared dataset: cannot open '", path, "'");
  const std::streamsize size = in.tellg();
  LLAMAFT_REQUIRE(size % static_cast<std::streamsize>(sizeof(T)) == 0, "prepared dataset: '", path,
                  "' has a truncated record (", size, " bytes)");
  std::vector<T> v(static_cast<size_t>(size) / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), size);
  return v;
}
}  // namespace

bool is_prepared_dataset(const std::string& path) {
  struct stat st;
  return stat((path + "/manifest.json").c_str(), &st) == 0 && stat((path + "/index.bin").c_str(), &st) == 0;
}

std::string resolve_prepared_split(const std::string& path, bool for_eval, std::string* chosen) {
  if (is_prepared_dataset(path) || !is_prepared_dataset(path + "/train")) return path;
  const std::string split = for_eval && is_prepared_dataset(path + "/val") ? "val" : "train";
  if (chosen) *chosen = split;
  return path + "/" + split;
}

TokenDataset load_prepared(const std::string& dir, int seq_len, int64_t vocab_size) {
  LLAMAFT_REQUIRE(is_prepared_dataset(dir), "'", dir, "' is not a prepared dataset split (no manifest.json and ",
                  "index.bin); run `llamaft prepare` and point data.path at DIR/train");
  std::ifstream mf(dir + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(mf, nullptr, false);
  LLAMAFT_REQUIRE(!manifest.is_discarded() && manifest.value("format", "") == kPreparedFormat, dir,
                  "/manifest.json is not a ", kPreparedFormat, " manifest");
  const auto index = read_all<int64_t>(dir + "/index.bin");
  const auto tokens = read_all<int32_t>(dir + "/tokens.bin");
  const auto labels = read_all<int32_t>(dir + "/labels.bin");
  const auto docs = read_all<int32_t>(dir + "/docs.bin");
  LLAMAFT_REQUIRE(!index.empty() && index.front() == 0 && index.back() == static_cast<int64_t>(tokens.size()) &&
                      labels.size() == tokens.size() && docs.size() == tokens.size(),
                  "prepared dataset '", dir, "': index and token files disagree (corrupt or partly written)");
  TokenDataset ds;
  for (size_t r = 0; r + 1 < index.size(); ++r) {
    const int64_t a = index[r], b = index[r + 1];
    LLAMAFT_REQUIRE(b >= a, "prepared dataset '", dir, "': index is not monotonic at row ", r);
    const int64_t n = std::min<int64_t>(b - a, seq_len);
    if (b - a > seq_len) {
      ds.truncated_rows++;
      ds.truncated_tokens += b - a - seq_len;
    }
    TokenRow row;
    row.input_ids.assign(tokens.begin() + a, tokens.begin() + a + n);
    row.labels.assign(labels.begin() + a, labels.begin() + a + n);
    bool packed = false;
    for (int64_t i = a; i < a + n; ++i) packed |= docs[i] != 0;
    if (packed) row.doc_start.assign(docs.begin() + a, docs.begin() + a + n);
    for (int32_t id : row.input_ids)
      LLAMAFT_REQUIRE(id >= 0 && id < vocab_size, "prepared dataset '", dir, "': token id ", id,
                      " is outside the model's vocabulary [0, ", vocab_size, "); prepared with another tokenizer?");
    ds.rows.push_back(std::move(row));
  }
  LLAMAFT_REQUIRE(!ds.rows.empty(), "prepared dataset '", dir, "' has no rows");
  return ds;
}

PreparedWriter::PreparedWriter(const std::string& dir) : dir_(dir) {
  mkdir(dir.c_str(), 0755);
  tokens_ = std::fopen((dir + "/tokens.bin").c_str(), "wb");
  labels_ = std::fopen((dir + "/labels.bin").c_str(), "wb");
  docs_ = std::fopen((dir + "/docs.bin").c_str(), "wb");
  LLAMAFT_REQUIRE(tokens_ && labels_ && docs_, "prepare: cannot write into '", dir, "'");
}

void PreparedWriter::add_row(const std::vector<int32_t>& ids, const std::vector<int32_t>& labels,
                             const std::vector<int32_t>& doc_start) {
  LLAMAFT_CHECK(ids.size() == labels.size(), "ids/labels size mismatch");
  std::vector<int32_t> docs = doc_start.empty() ? std::vector<int32_t>(ids.size(), 0) : doc_start;
  const size_t n = ids.size();
  LLAMAFT_REQUIRE(std::fwrite(ids.data(), 4, n, tokens_) == n && std::fwrite(labels.data(), 4, n, labels_) == n &&
                      std::fwrite(docs.data(), 4, n, docs_) == n,
                  "prepare: write to '", dir_, "' failed (disk full?)");
  offsets_.push_back(offsets_.back() + static_cast<int64_t>(n));
}

void PreparedWriter::finish(const std::string& manifest_json) {
  for (std::FILE* f : {tokens_, labels_, docs_}) LLAMAFT_REQUIRE(std::fclose(f) == 0, "prepare: close failed");
  tokens_ = labels_ = docs_ = nullptr;
  std::FILE* idx = std::fopen((dir_ + "/index.bin").c_str(), "wb");
  LLAMAFT_REQUIRE(idx && std::fwrite(offsets_.data(), 8, offsets_.size(), idx) == offsets_.size() &&
                      std::fclose(idx) == 0,
                  "prepare: cannot write '", dir_, "/index.bin'");
  std::ofstream(dir_ + "/manifest.json") << manifest_json << "\n";
}

}  // namespace llamaft
