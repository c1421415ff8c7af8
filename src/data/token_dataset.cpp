#include "data/token_dataset.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/ignore_index.hpp"
#include "core/error.hpp"
#include "data/prepared_dataset.hpp"

namespace llamaft {

namespace {
std::vector<int32_t> int_list(const nlohmann::json& j, const char* key, const std::string& where) {
  LLAMAFT_REQUIRE(j[key].is_array(), where, ": '", key, "' must be a list of integers");
  std::vector<int32_t> out;
  out.reserve(j[key].size());
  for (const auto& v : j[key]) {
    LLAMAFT_REQUIRE(v.is_number_integer(), where, ": '", key, "' holds a non-integer value ", v.dump());
    const int64_t x = v.get<int64_t>();
    LLAMAFT_REQUIRE(x >= INT32_MIN && x <= INT32_MAX, where, ": '", key, "' value ", x, " out of range");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}
}  // namespace

TokenDataset load_token_jsonl(const std::string& path, int seq_len, int64_t vocab_size) {
  struct stat st;
  LLAMAFT_REQUIRE(stat(path.c_str(), &st) == 0, "cannot open dataset '", path, "': ", std::strerror(errno));
  LLAMAFT_REQUIRE(!S_ISDIR(st.st_mode), "dataset '", path, "' is a folder but not a prepared dataset (",
                  stat((path + "/train").c_str(), &st) == 0
                      ? "its train/ has no manifest.json and index.bin: an interrupted or foreign prepare output?"
                      : "no manifest.json and index.bin",
                  "); give a JSONL file or a folder `llamaft prepare` wrote");
  std::ifstream in(path);
  LLAMAFT_REQUIRE(in.good(), "cannot open dataset '", path, "'");
  TokenDataset ds;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      LLAMAFT_FAIL(where, ": not valid JSON (", e.what(), ")");
    }
    LLAMAFT_REQUIRE(j.is_object() && j.contains("input_ids"), where,
                    ": each row needs an 'input_ids' list");
    TokenRow row;
    row.input_ids = int_list(j, "input_ids", where);
    LLAMAFT_REQUIRE(!row.input_ids.empty(), where, ": 'input_ids' is empty");
    for (int32_t id : row.input_ids)
      LLAMAFT_REQUIRE(id >= 0 && id < vocab_size, where, ": token id ", id,
                      " is outside the model's vocabulary [0, ", vocab_size, ")");
    if (j.contains("labels")) {
      row.labels = int_list(j, "labels", where);
      LLAMAFT_REQUIRE(row.labels.size() == row.input_ids.size(), where, ": 'labels' has ",
                      row.labels.size(), " entries but 'input_ids' has ", row.input_ids.size());
      for (int32_t id : row.labels)
        LLAMAFT_REQUIRE(id == kIgnoreIndex || (id >= 0 && id < vocab_size), where,
                        ": label ", id, " is neither -100 nor a valid token id");
    } else {
      row.labels = row.input_ids;
    }
    if (static_cast<int>(row.input_ids.size()) > seq_len) {
      ds.truncated_rows++;
      ds.truncated_tokens += static_cast<int64_t>(row.input_ids.size()) - seq_len;
      row.input_ids.resize(seq_len);
      row.labels.resize(seq_len);
    }
    ds.rows.push_back(std::move(row));
  }
  LLAMAFT_REQUIRE(!ds.rows.empty(), "dataset '", path, "' has no rows");
  return ds;
}

HostBatch make_batch(const std::vector<const TokenRow*>& rows, int seq_len) {
  HostBatch b;
  b.batch = static_cast<int>(rows.size());
  b.seq = seq_len;
  const size_t n = static_cast<size_t>(b.batch) * seq_len;
  b.ids.assign(n, 0);
  b.positions.assign(n, 0);
  b.targets.assign(n, kIgnoreIndex);
  bool packed = false;
  for (const TokenRow* row : rows) packed |= !row->doc_start.empty();
  if (packed) b.doc_start.assign(n, 0);
  for (int r = 0; r < b.batch; ++r) {
    const TokenRow& row = *rows[r];
    const int len = static_cast<int>(row.input_ids.size());
    LLAMAFT_CHECK(len <= seq_len, "row longer than seq_len");
    const bool docs = !row.doc_start.empty();
    for (int t = 0; t < seq_len; ++t) {
      const size_t i = static_cast<size_t>(r) * seq_len + t;
      const int32_t start = docs && t < len ? row.doc_start[t] : (t < len ? 0 : t);
      int32_t position = t < len ? t - start : t;
      if (start < 0 && row.position_period > 0) position %= row.position_period;
      b.positions[i] = position;
      if (packed) b.doc_start[i] = std::max(start, 0);  // attention never reaches before the row
      if (t < len) b.ids[i] = row.input_ids[t];
      const bool same_doc = t + 1 < len && (!docs || row.doc_start[t + 1] == row.doc_start[t]);
      if (same_doc) {
        b.targets[i] = row.labels[t + 1];
        b.target_tokens += row.labels[t + 1] != kIgnoreIndex;
      }
    }
  }
  return b;
}

HostBatch make_batch(const TokenDataset& ds, const int64_t* rows, size_t count) {
  std::vector<const TokenRow*> picked;
  int longest = 2;
  for (size_t i = 0; i < count; ++i) {
    const TokenRow& r = ds.rows[static_cast<size_t>(rows[i])];
    picked.push_back(&r);
    longest = std::max<int>(longest, static_cast<int>(r.input_ids.size()));
  }
  return make_batch(picked, longest);
}

}  // namespace llamaft

namespace llamaft {

TokenDataset load_dataset(const std::string& path, const std::string& format, int seq_len, int64_t vocab_size) {
  struct stat st;
  const bool folder = stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (format == "prepared" || (format == "auto" && folder)) return load_prepared(path, seq_len, vocab_size);
  return load_token_jsonl(path, seq_len, vocab_size);
}

}  // namespace llamaft
