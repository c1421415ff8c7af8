// Token datasets: JSONL rows with `input_ids` and optional `labels` (the
// Hugging Face convention: labels align with input_ids, -100 is ignored, and
// the model shifts them so position t predicts t+1), and the batching that
// turns rows into model inputs with next-token targets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llamaft {

struct TokenRow {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;     // same length as input_ids
  // Packed rows: row-relative start of each token's document (empty: one
  // document). Negative: the document began that many tokens before this
  // row (split across packed rows); attention then starts at the row start.
  std::vector<int32_t> doc_start;
  // Positions of a split document continue across rows modulo this (the
  // prepared row length, as torchtune's packer); 0: they never wrap.
  int32_t position_period = 0;
};

struct TokenDataset {
  std::vector<TokenRow> rows;
  int64_t truncated_rows = 0;   // rows longer than seq_len
  int64_t truncated_tokens = 0;
};

// Reads a JSONL file. Rows longer than seq_len are truncated and counted.
// Bad rows (not JSON, missing input_ids, ids outside [0, vocab), labels of a
// different length) are errors that name file:line.
TokenDataset load_token_jsonl(const std::string& path, int seq_len, int64_t vocab_size);

// data.format: "tokens" (JSONL) or "prepared" (a `llamaft prepare` split
// folder, e.g. DIR/train); "auto" picks prepared for a folder.
TokenDataset load_dataset(const std::string& path, const std::string& format, int seq_len, int64_t vocab_size);

// A host-side batch: B rows padded to seq_len, with shifted targets.
struct HostBatch {
  int batch = 0, seq = 0;
  std::vector<int32_t> ids, positions, targets;  // (B*T)
  std::vector<int32_t> doc_start;                // (B*T), empty unless a row is packed
  int64_t target_tokens = 0;                      // non-ignored targets
  std::vector<uint64_t> dropout_keys;             // (B) training only: keys of the LoRA dropout masks
};

// Packs rows (each at most seq_len) into a padded batch. targets[t] =
// labels[t+1] within the same document, -100 at a document's last token and
// past the row end; positions restart at each document (a document begun in
// an earlier row continues its positions); padding uses id 0.
HostBatch make_batch(const std::vector<const TokenRow*>& rows, int seq_len);

// The batch of dataset rows `rows` (indices into ds), padded to its longest
// row (at least 2 tokens): what train, its evaluation and eval all build.
HostBatch make_batch(const TokenDataset& ds, const int64_t* rows, size_t count);

}  // namespace llamaft
