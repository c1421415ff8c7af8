// What a checkpoint holds and what it must agree on, shared by the three
// rooms of checkpoint/: the format (h5_format), the shard I/O (shard_io) and
// the commit protocol with the asynchronous save (checkpoint).
#pragma once

#include <cstdint>
#include <string>

#include "core/error.hpp"

namespace llamaft {

constexpr int kCheckpointFormat = 2;
constexpr uint64_t kChecksumBlockBytes = uint64_t(1) << 20;

// Where training stands; enough for a bit-identical continuation (the data
// order and the schedule are pure functions of the step and the seed).
struct TrainState {
  int64_t step = 0;            // optimizer steps completed
  int64_t consumed_rows = 0;   // step * global batch
  int64_t consumed_tokens = 0;
  int64_t skips_in_row = 0;    // consecutive non-finite steps
};

// What a checkpoint must agree on with the run that resumes it.
struct RunIdentity {
  std::string model_config_json;  // the architecture (must match)
  std::string method = "full";    // full | lora | qlora (must match)
  std::string base_fingerprint;   // the base model's files (must match)
  int64_t global_batch = 0;       // data position semantics (must match)
  int64_t seed = 0;
  bool shuffle = false;
  std::string data_path;          // informational: the data is identified by data_fingerprint
  std::string data_fingerprint;   // the data's content (data_fingerprint()); must match unless allow_data_change
  int64_t seq_len = 0;            // data.seq_len; likewise
  bool allow_data_change = false; // checkpoint.allow_data_change
  // LoRA's shape and scale (must match: r always; targets, alpha, rslora and
  // the base's quantization unless allow_lora_change). Empty without LoRA.
  int64_t lora_r = 0;
  double lora_alpha = 0;
  bool lora_rslora = false;
  std::string lora_targets;       // "q_proj,k_proj,..." in layer order
  std::string base_quant;         // none | int8 | nf4 | bf16
  bool allow_lora_change = false; // checkpoint.allow_lora_change
  std::string strategy;           // informational: resharding is allowed
  std::string effective_config;   // informational
};

// A checkpoint that cannot be used (missing, truncated, corrupt, mismatched).
class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& msg) : Error(msg, kExitBadCheckpoint) {}
};

// The message of a save that failed on this rank: what it was doing, where and why.
inline std::string save_failure(int64_t step, const std::string& what, const std::string& path,
                                const std::string& why) {
  return str_cat("checkpoint of step ", step, " (host ", process_host(), ", rank ", process_rank(), "): ", what, " '",
                 path, "': ", why, "; the save was abandoned and the previous checkpoint is intact");
}

// A cheap fingerprint of an HF model directory: config.json, every
// safetensors header and size, and 16 sampled 4 KiB blocks of each file's
// data (hashing all of a 140 GB 70B model at every start-up is too slow).
std::string model_fingerprint(const std::string& model_dir);

// The training data's identity by content, not by how its path is spelled: a
// prepared split's manifest.json and the sizes of its files, or a JSONL
// file's size, plus sampled 4 KiB blocks of every file (as model_fingerprint).
std::string data_fingerprint(const std::string& data_path);

}  // namespace llamaft
