// Fuzz target: a prepared dataset folder as `llamaft prepare` writes it
// (sections: split manifest.json, index.bin, tokens.bin, labels.bin,
// docs.bin, and the folder's manifest.json listing its splits) read the way
// train and eval read it: resolve_prepared_split, load_dataset, make_batch.
// Either it loads or it raises llamaft::Error; anything else is a bug. What
// loads must be safe to hand to the model: ids in [0, vocab), targets -100 or
// in [0, vocab), positions >= 0, and attention starts within [0, t].
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/prepared_dataset.hpp"
#include "data/token_dataset.hpp"
#include "fuzz_sections.hpp"

namespace {
constexpr int64_t kVocab = 1000;
const char* const kFiles[] = {"train/manifest.json", "train/index.bin", "train/tokens.bin", "train/labels.bin",
                              "train/docs.bin", "manifest.json"};

void check_batch(const llamaft::HostBatch& b) {
  for (int r = 0; r < b.batch; ++r)
    for (int t = 0; t < b.seq; ++t) {
      const size_t i = static_cast<size_t>(r) * b.seq + t;
      if (b.ids[i] < 0 || b.ids[i] >= kVocab) __builtin_trap();
      if (b.targets[i] != -100 && (b.targets[i] < 0 || b.targets[i] >= kVocab)) __builtin_trap();
      if (b.positions[i] < 0) __builtin_trap();
      if (!b.doc_start.empty() && (b.doc_start[i] < 0 || b.doc_start[i] > t)) __builtin_trap();
    }
}

void load_and_batch(const std::string& dir, int seq_len) {
  const std::string split = llamaft::resolve_prepared_split(dir, true);
  const llamaft::TokenDataset ds = llamaft::load_dataset(split, "auto", seq_len, kVocab);
  std::vector<int64_t> rows;
  for (size_t r = 0; r < ds.rows.size(); ++r) {
    if (ds.rows[r].input_ids.size() > static_cast<size_t>(seq_len) ||
        ds.rows[r].labels.size() != ds.rows[r].input_ids.size())
      __builtin_trap();
    rows.push_back(static_cast<int64_t>(r));
    if (rows.size() == 4 || r + 1 == ds.rows.size()) {
      check_batch(llamaft::make_batch(ds, rows.data(), rows.size()));
      rows.clear();
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = fuzz::scratch_dir("prepared") + "/data";
  const auto sections = fuzz::split_sections(data, size, fuzz::section_count());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/train");
  for (size_t s = 0; s < sections.size(); ++s)
    if (s + 1 < sections.size() || !sections[s].empty()) fuzz::write_file(dir + "/" + kFiles[s], sections[s]);
  for (int seq_len : {64, 5}) {
    try {
      load_and_batch(dir, seq_len);
    } catch (const llamaft::Error&) {
    }
  }
  return 0;
}

namespace fuzz {

size_t section_count() { return 6; }

std::vector<Bytes> seeds() {
  const std::string manifest = R"({"format": "llamaft-prepared-v1", "split": "train", "seq_len": 16, "run_id": "r1"})";
  const std::string top = R"({"format": "llamaft-prepared-output-v1", "splits": ["train"], "run_id": "r1"})";
  auto seed = [&](const std::vector<int64_t>& index, const std::vector<int32_t>& ids, const std::vector<int32_t>& labels,
                  const std::vector<int32_t>& docs, const std::string& m, const std::string& t) {
    return join_sections({text(m), pod_array(index), pod_array(ids), pod_array(labels), pod_array(docs), text(t)});
  };
  std::vector<int32_t> ids, labels, docs;
  for (int i = 0; i < 12; ++i) ids.push_back(3 + i), labels.push_back(i < 4 ? -100 : 3 + i), docs.push_back(0);
  // Packed: two documents in row 0, a document split across rows 1 and 2 (negative starts).
  const std::vector<int32_t> pdocs = {0, 0, 0, 3, 3, 3, 0, 0, 0, 0, -4, -4};
  return {
      seed({0, 5, 12}, ids, labels, docs, manifest, top),
      seed({0, 6, 10, 12}, ids, labels, pdocs, manifest, top),
      seed({0, 12}, ids, labels, docs, manifest, ""),  // a split given without the folder manifest
      seed({0, 4, 8, 12}, ids, ids, docs, R"({"format": "llamaft-prepared-v1", "seq_len": 4})", top),
      seed({0, 12}, ids, labels, docs, manifest, R"({"format": "llamaft-prepared-output-v1", "splits": ["val"]})"),
      seed({0, 12}, ids, labels, docs, "[1, 2]", R"({"format": 7, "splits": "train"})"),
      seed({0}, {}, {}, {}, manifest, top),
      seed({0, 1 << 20, 12}, ids, labels, docs, manifest, top),
  };
}

}  // namespace fuzz
