#include "data/prepared_dataset.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/ignore_index.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace fs = std::filesystem;

namespace {
template <typename T>
std::vector<T> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  LLAMAFT_REQUIRE(in.good(), "prepared dataset: cannot open '", path, "'");
  const std::streamsize size = in.tellg();
  LLAMAFT_REQUIRE(size >= 0 && size % static_cast<std::streamsize>(sizeof(T)) == 0, "prepared dataset: '", path,
                  "' has a truncated record (", size, " bytes)");
  std::vector<T> v(static_cast<size_t>(size) / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), size);
  LLAMAFT_REQUIRE(in.good() || size == 0, "prepared dataset: cannot read '", path, "'");
  return v;
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// A small JSON file as an object; discarded (is_discarded()) when absent or
// not a JSON object.
nlohmann::json read_json_object(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) return nlohmann::json(nlohmann::json::value_t::discarded);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) return nlohmann::json(nlohmann::json::value_t::discarded);
  return j;
}

std::string string_field(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// path without trailing slashes, split into its parent and last component.
void split_path(std::string path, std::string* parent, std::string* name) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.find_last_of('/');
  *parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  *name = slash == std::string::npos ? path : path.substr(slash + 1);
}

// Why a split folder must not be read, or "" when it may: its parent's
// output manifest does not list it, or (folders from before that manifest
// existed) a val split that is not from the same prepare as train.
std::string unlisted_reason(const std::string& split_dir) {
  std::string parent, name;
  split_path(split_dir, &parent, &name);
  const nlohmann::json top = read_json_object(parent + "/manifest.json");
  const nlohmann::json mine = read_json_object(split_dir + "/manifest.json");
  if (!top.is_discarded() && string_field(top, "format") == kPreparedOutputFormat) {
    bool listed = false;
    if (top.contains("splits") && top["splits"].is_array())
      for (const auto& s : top["splits"]) listed |= s.is_string() && s.get<std::string>() == name;
    if (!listed)
      return str_cat("'", split_dir, "' is not a split that ", parent,
                     "/manifest.json lists (left over from an earlier prepare into that folder?)");
    if (mine.is_discarded() || string_field(mine, "run_id") != string_field(top, "run_id"))
      return str_cat("'", split_dir, "' was written by another prepare than ", parent,
                     "/manifest.json (its run_id differs); prepare the folder again");
    return "";
  }
  if (name != "val" || !exists(parent + "/train/manifest.json")) return "";
  // Before DIR/manifest.json: the two manifests of one prepare share every count.
  const nlohmann::json train = read_json_object(parent + "/train/manifest.json");
  if (train.is_discarded() || mine.is_discarded()) return "";
  for (const char* key : {"inputs", "documents_total", "val_fraction", "tokenizer_hash", "seq_len", "packed",
                          "template", "input_format"})
    if (train.value(key, nlohmann::json()) != mine.value(key, nlohmann::json()))
      return str_cat("'", split_dir, "' is not from the prepare that wrote ", parent, "/train (their manifests "
                     "differ in '", key, "'; left over from an earlier prepare into that folder?)");
  return "";
}

bool has_split_files(const std::string& path) {
  return exists(path + "/manifest.json") && exists(path + "/index.bin");
}
}  // namespace

bool is_prepared_dataset(const std::string& path) {
  return has_split_files(path) && unlisted_reason(path).empty();
}

std::string resolve_prepared_split(const std::string& path, bool for_eval, std::string* chosen) {
  if (has_split_files(path) || !has_split_files(path + "/train")) return path;
  const std::string split = for_eval && is_prepared_dataset(path + "/val") ? "val" : "train";
  if (chosen) *chosen = split;
  return path + "/" + split;
}

void check_prepared_row(const int32_t* ids, const int32_t* labels, const int32_t* docs, int64_t n, int64_t vocab,
                        const std::string& where) {
  for (int64_t t = 0; t < n; ++t) {
    LLAMAFT_REQUIRE(ids[t] >= 0 && ids[t] < vocab, where, " (tokens.bin, token ", t, "): token id ", ids[t],
                    " is outside the model's vocabulary [0, ", vocab, "); prepared with another tokenizer?");
    LLAMAFT_REQUIRE(labels[t] == kIgnoreIndex || (labels[t] >= 0 && labels[t] < vocab), where, " (labels.bin, token ",
                    t, "): label ", labels[t], " is neither -100 nor in the model's vocabulary [0, ", vocab, ")");
    if (!docs) continue;
    // The first token's document began at the row start or before it; later
    // tokens continue the previous token's document or start one.
    const bool ok = t == 0 ? docs[0] <= 0 : docs[t] == docs[t - 1] || docs[t] == t;
    LLAMAFT_REQUIRE(ok, where, " (docs.bin, token ", t, "): document start ", docs[t],
                    t == 0 ? " is after the row start" : str_cat(" neither continues the previous token's document (",
                                                                docs[t - 1], ") nor starts at this token"));
  }
}

int seq_len_for(const std::string& data_path, int given, bool given_explicitly, bool for_eval, const std::string& key) {
  const std::string split = resolve_prepared_split(data_path, for_eval);
  if (!is_prepared_dataset(split)) return given;
  std::ifstream mf(split + "/manifest.json");
  const nlohmann::json m = nlohmann::json::parse(mf, nullptr, false);
  if (m.is_discarded() || !m.contains("seq_len") || !m["seq_len"].is_number_integer()) return given;
  const int prepared = m["seq_len"].get<int>();
  if (!given_explicitly) return prepared;
  LLAMAFT_REQUIRE(given == prepared, key, " = ", given, " but '", data_path, "' was prepared with --seq-len ", prepared,
                  given < prepared ? ": its rows would be cut" : ": rows that long were never packed",
                  "; leave ", key, " out (it defaults to the prepared value) or prepare the data again");
  return prepared;
}

TokenDataset load_prepared(const std::string& dir, int seq_len, int64_t vocab_size) {
  if (!has_split_files(dir)) {
    const std::string split = exists(dir + "/train") ? dir + "/train" : dir;
    LLAMAFT_FAIL("'", dir, "' is not a prepared dataset (", split, "/",
                 exists(split + "/index.bin")      ? "manifest.json is missing"
                 : exists(split + "/manifest.json") ? "index.bin is missing"
                                                    : "manifest.json and index.bin are missing",
                 "; an interrupted or foreign prepare output?); run `llamaft prepare` and point data.path at its "
                 "output folder");
  }
  const std::string unlisted = unlisted_reason(dir);
  LLAMAFT_REQUIRE(unlisted.empty(), unlisted);
  const nlohmann::json manifest = read_json_object(dir + "/manifest.json");
  LLAMAFT_REQUIRE(!manifest.is_discarded() && string_field(manifest, "format") == kPreparedFormat, dir,
                  "/manifest.json is not a ", kPreparedFormat, " manifest");
  // Positions of a document split across packed rows continue from row to
  // row modulo the prepared row length (torchtune's input_pos = offset % max_seq_len).
  int32_t period = 0;
  if (manifest.contains("seq_len") && manifest["seq_len"].is_number_integer()) {
    const int64_t s = manifest["seq_len"].get<int64_t>();
    LLAMAFT_REQUIRE(s >= 2 && s <= (int64_t{1} << 30), dir, "/manifest.json: seq_len ", s, " is out of range");
    period = static_cast<int32_t>(s);
  }
  const auto index = read_all<int64_t>(dir + "/index.bin");
  const auto tokens = read_all<int32_t>(dir + "/tokens.bin");
  const auto labels = read_all<int32_t>(dir + "/labels.bin");
  const auto docs = read_all<int32_t>(dir + "/docs.bin");
  const int64_t total = static_cast<int64_t>(tokens.size());
  LLAMAFT_REQUIRE(!index.empty() && index.front() == 0 && index.back() == total && labels.size() == tokens.size() &&
                      docs.size() == tokens.size(),
                  "prepared dataset '", dir, "': index and token files disagree (corrupt or partly written)");
  for (size_t r = 0; r + 1 < index.size(); ++r)
    LLAMAFT_REQUIRE(index[r + 1] >= index[r] && index[r + 1] <= total, "prepared dataset '", dir,
                    "': index.bin row ", r, " ends at ", index[r + 1], ", before its start ", index[r],
                    " or past the ", total, " tokens (corrupt index)");
  TokenDataset ds;
  for (size_t r = 0; r + 1 < index.size(); ++r) {
    const int64_t a = index[r], b = index[r + 1];
    if (b == a) continue;  // an empty row trains nothing
    LLAMAFT_REQUIRE(period == 0 || b - a <= period, "prepared dataset '", dir, "': row ", r, " has ", b - a,
                    " tokens, more than the manifest's seq_len ", period);
    check_prepared_row(tokens.data() + a, labels.data() + a, docs.data() + a, b - a, vocab_size,
                       str_cat("prepared dataset '", dir, "', row ", r));
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
    if (packed) {
      row.doc_start.assign(docs.begin() + a, docs.begin() + a + n);
      row.position_period = period;
    }
    ds.rows.push_back(std::move(row));
  }
  LLAMAFT_REQUIRE(!ds.rows.empty(), "prepared dataset '", dir, "' has no rows");
  return ds;
}

PreparedWriter::PreparedWriter(const std::string& dir, int64_t vocab) : dir_(dir), vocab_(vocab) {
  mkdir(dir.c_str(), 0755);
  tokens_ = std::fopen((dir + "/tokens.bin").c_str(), "wb");
  labels_ = std::fopen((dir + "/labels.bin").c_str(), "wb");
  docs_ = std::fopen((dir + "/docs.bin").c_str(), "wb");
  if (!tokens_ || !labels_ || !docs_) {
    const std::string why = std::strerror(errno);
    for (std::FILE* f : {tokens_, labels_, docs_})
      if (f) std::fclose(f);
    tokens_ = labels_ = docs_ = nullptr;
    LLAMAFT_FAIL("prepare: cannot write into '", dir, "': ", why);
  }
}

PreparedWriter::~PreparedWriter() {
  for (std::FILE* f : {tokens_, labels_, docs_})
    if (f) std::fclose(f);
}

void PreparedWriter::add_row(const std::vector<int32_t>& ids, const std::vector<int32_t>& labels,
                             const std::vector<int32_t>& doc_start) {
  LLAMAFT_CHECK(ids.size() == labels.size() && (doc_start.empty() || doc_start.size() == ids.size()),
                "ids/labels/docs size mismatch");
  const size_t n = ids.size();
  check_prepared_row(ids.data(), labels.data(), doc_start.empty() ? nullptr : doc_start.data(),
                     static_cast<int64_t>(n), vocab_, str_cat("prepare: '", dir_, "', row ", rows()));
  std::vector<int32_t> docs = doc_start.empty() ? std::vector<int32_t>(n, 0) : doc_start;
  LLAMAFT_REQUIRE(std::fwrite(ids.data(), 4, n, tokens_) == n && std::fwrite(labels.data(), 4, n, labels_) == n &&
                      std::fwrite(docs.data(), 4, n, docs_) == n,
                  "prepare: write to '", dir_, "' failed (disk full?)");
  offsets_.push_back(offsets_.back() + static_cast<int64_t>(n));
}

void PreparedWriter::finish(const std::string& manifest_json) {
  for (std::FILE** f : {&tokens_, &labels_, &docs_}) {
    const bool ok = std::fflush(*f) == 0 && fsync(fileno(*f)) == 0;
    const int err = errno;
    const bool closed = std::fclose(*f) == 0;
    *f = nullptr;
    LLAMAFT_REQUIRE(ok && closed, "prepare: writing into '", dir_, "' failed: ", std::strerror(err));
  }
  write_file_durably(dir_ + "/index.bin",
                     std::string(reinterpret_cast<const char*>(offsets_.data()), offsets_.size() * sizeof(int64_t)));
  write_file_durably(dir_ + "/manifest.json", manifest_json + "\n");
}

PreparedOutput::PreparedOutput(const std::string& dir) : dir_(dir) {
  LLAMAFT_REQUIRE(!dir.empty(), "prepare: --output is empty");
  std::string trimmed = dir;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  dir_ = trimmed;
  staging_ = dir_ + ".partial";
  struct stat st;
  if (stat(dir_.c_str(), &st) == 0) {
    LLAMAFT_REQUIRE(S_ISDIR(st.st_mode), "prepare: --output '", dir_, "' exists and is not a folder");
    // Only a folder an earlier prepare wrote (or an empty one) is replaced.
    const nlohmann::json top = read_json_object(dir_ + "/manifest.json");
    const bool ours = (!top.is_discarded() && string_field(top, "format") == kPreparedOutputFormat) ||
                      string_field(read_json_object(dir_ + "/train/manifest.json"), "format") == kPreparedFormat;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string name = e.path().filename().string();
      LLAMAFT_REQUIRE(ours && (name == "train" || name == "val" || name == "manifest.json"), "prepare: --output '",
                      dir_, "' already holds '", name, "' and is not a folder `llamaft prepare` wrote; choose a "
                      "new folder (prepare replaces its output folder as a whole)");
    }
    LLAMAFT_REQUIRE(!ec, "prepare: cannot list '", dir_, "': ", ec.message());
  }
  std::error_code ec;
  fs::remove_all(staging_, ec);  // a staging folder left by an interrupted prepare
  LLAMAFT_REQUIRE(!ec, "prepare: cannot remove the leftover '", staging_, "': ", ec.message());
  make_directories(staging_);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  run_id_ = str_cat(std::hex, std::chrono::duration_cast<std::chrono::nanoseconds>(now).count(), "-", getpid());
}

PreparedOutput::~PreparedOutput() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void PreparedOutput::commit(const std::vector<std::string>& splits, const std::string& summary_json) {
  nlohmann::ordered_json top = {{"format", kPreparedOutputFormat}, {"splits", splits}, {"run_id", run_id_}};
  nlohmann::ordered_json summary = nlohmann::ordered_json::parse(summary_json, nullptr, false);
  if (summary.is_object())
    for (auto it = summary.begin(); it != summary.end(); ++it) top[it.key()] = it.value();
  write_file_durably(staging_ + "/manifest.json", top.dump(2) + "\n");
  fsync_path(staging_);
  // Swap the new folder in; the old one, if any, goes with one rename, so a
  // reader sees either the whole old output or the whole new one.
  const std::string old = dir_ + ".replaced";
  std::error_code ec;
  fs::remove_all(old, ec);
  const bool had_old = exists(dir_);
  if (had_old && renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(staging_, ec);  // now the old output
  } else {
    if (had_old)
      LLAMAFT_REQUIRE(std::rename(dir_.c_str(), old.c_str()) == 0, "prepare: cannot move the old '", dir_,
                      "' aside: ", std::strerror(errno));
    LLAMAFT_REQUIRE(std::rename(staging_.c_str(), dir_.c_str()) == 0, "prepare: cannot rename '", staging_,
                    "' to '", dir_, "': ", std::strerror(errno));
    if (had_old) fs::remove_all(old, ec);
  }
  committed_ = true;
  std::string parent, name;
  split_path(dir_, &parent, &name);
  fsync_path(parent);
}

}  // namespace llamaft
