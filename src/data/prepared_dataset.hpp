// The prepared dataset `llamaft prepare` writes and `train`/`eval` read: per
// split folder (DIR/train, DIR/val) four little-endian binary files, all
// memory-mappable, plus a manifest:
//   tokens.bin   int32 (total tokens)      input ids of every row, concatenated
//   labels.bin   int32 (total tokens)      labels aligned with the ids (-100: not trained)
//   docs.bin     int32 (total tokens)      row-relative start of each token's document
//   index.bin    int64 (rows + 1)          row offsets into the three files above
//   manifest.json                          tokenizer hash, template, counts, statistics
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/token_dataset.hpp"

namespace llamaft {

constexpr const char* kPreparedFormat = "llamaft-prepared-v1";

bool is_prepared_dataset(const std::string& path);

// The folder `llamaft prepare --output DIR` wrote, given as data.path: DIR/train
// for training; DIR/val (when it exists, else DIR/train) for evaluation. Any
// other path is returned as it is. `chosen` says which split was picked.
std::string resolve_prepared_split(const std::string& path, bool for_eval, std::string* chosen = nullptr);

// Reads one split folder. Rows longer than seq_len are truncated (counted).
TokenDataset load_prepared(const std::string& dir, int seq_len, int64_t vocab_size);

class PreparedWriter {
 public:
  explicit PreparedWriter(const std::string& dir);
  // One row: ids, labels and (for packed rows) document starts.
  void add_row(const std::vector<int32_t>& ids, const std::vector<int32_t>& labels,
               const std::vector<int32_t>& doc_start);
  // Writes index.bin and the manifest (the caller's JSON object text).
  void finish(const std::string& manifest_json);
  int64_t rows() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t tokens() const { return offsets_.back(); }

 private:
  std::string dir_;
  std::FILE* tokens_ = nullptr;
  std::FILE* labels_ = nullptr;
  std::FILE* docs_ = nullptr;
  std::vector<int64_t> offsets_{0};
};

}  // namespace llamaft
