// The prepared dataset `llamaft prepare` writes and `train`/`eval` read: per
// split folder (DIR/train, DIR/val) four little-endian binary files, all
// memory-mappable, plus a manifest:
//   tokens.bin   int32 (total tokens)      input ids of every row, concatenated
//   labels.bin   int32 (total tokens)      labels aligned with the ids (-100: not trained)
//   docs.bin     int32 (total tokens)      row-relative start of each token's document;
//                                          negative: the document began that many tokens
//                                          before this row (a packed document split across rows)
//   index.bin    int64 (rows + 1)          row offsets into the three files above
//   manifest.json                          tokenizer hash, template, counts, statistics
// and DIR/manifest.json, which lists the splits of the folder: a split it
// does not list (left by an earlier prepare, or copied in) is never read.
//
// Every id and label is range-checked where it enters: when prepare writes a
// row and when train/eval load one (ids in [0, vocab), labels -100 or in
// [0, vocab), document starts that keep attention inside the row).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/token_dataset.hpp"

namespace llamaft {

constexpr const char* kPreparedFormat = "llamaft-prepared-v1";
// DIR/manifest.json: {"format": kPreparedOutputFormat, "splits": [...], "run_id": ...}
constexpr const char* kPreparedOutputFormat = "llamaft-prepared-output-v1";

// A split folder (manifest.json and index.bin) that its parent folder's
// manifest lists (when the parent has one; a split folder given on its own
// is taken as it is).
bool is_prepared_dataset(const std::string& path);

// The folder `llamaft prepare --output DIR` wrote, given as data.path: DIR/train
// for training; DIR/val (when the folder lists it, else DIR/train) for
// evaluation. Any other path is returned as it is. `chosen` says which split
// was picked.
std::string resolve_prepared_split(const std::string& path, bool for_eval, std::string* chosen = nullptr);

// The row length to read `data_path` with: a prepared split's rows are
// `prepare --seq-len` long, so that is the default; a different value given
// explicitly (`key`, e.g. "data.seq_len") would truncate them or disagree
// with the checkpoint's, and is refused. Other data: `given`.
int seq_len_for(const std::string& data_path, int given, bool given_explicitly, bool for_eval, const std::string& key);

// Reads one split folder. Rows longer than seq_len are truncated (counted).
// Any id, label, document start or offset out of range is an error (exit 2)
// naming the file and the row.
TokenDataset load_prepared(const std::string& dir, int seq_len, int64_t vocab_size);

// Checks one row: ids in [0, vocab), labels -100 or in [0, vocab), and
// document starts (empty: one document) that begin at the row start or
// earlier (<= 0) for the first token and otherwise either continue the
// previous token's document or start one at that token. Throws naming
// `where` and the offending file.
void check_prepared_row(const int32_t* ids, const int32_t* labels, const int32_t* docs, int64_t n, int64_t vocab,
                        const std::string& where);

class PreparedWriter {
 public:
  // vocab: the tokenizer's (ids and labels are checked against it).
  PreparedWriter(const std::string& dir, int64_t vocab);
  ~PreparedWriter();
  PreparedWriter(const PreparedWriter&) = delete;
  PreparedWriter& operator=(const PreparedWriter&) = delete;
  // One row: ids, labels and (for packed rows) document starts.
  void add_row(const std::vector<int32_t>& ids, const std::vector<int32_t>& labels,
               const std::vector<int32_t>& doc_start);
  // Writes index.bin and the manifest (the caller's JSON object text).
  void finish(const std::string& manifest_json);
  int64_t rows() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t tokens() const { return offsets_.back(); }

 private:
  std::string dir_;
  int64_t vocab_;
  std::FILE* tokens_ = nullptr;
  std::FILE* labels_ = nullptr;
  std::FILE* docs_ = nullptr;
  std::vector<int64_t> offsets_{0};
};

// The output folder of one `prepare`, replaced as a whole: the splits are
// written into DIR.partial, which commit() swaps in for DIR (an earlier
// prepare output there is removed, so no split of it survives). A DIR that
// holds anything else is refused before any work.
class PreparedOutput {
 public:
  explicit PreparedOutput(const std::string& dir);
  ~PreparedOutput();  // removes DIR.partial unless committed
  const std::string& staging() const { return staging_; }
  const std::string& run_id() const { return run_id_; }
  // Writes DIR.partial/manifest.json listing `splits`, then puts it in place.
  void commit(const std::vector<std::string>& splits, const std::string& summary_json);

 private:
  std::string dir_, staging_, run_id_;
  bool committed_ = false;
};

}  // namespace llamaft
