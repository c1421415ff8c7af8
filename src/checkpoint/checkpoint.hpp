// Sharded HDF5 checkpoints, written collectively with parallel HDF5.
//
// checkpoint.dir/step_000123/state.h5 holds every tensor at its Hugging Face
// name in its full logical shape (/model/<name> fp32 master weights,
// /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>), each rank writing exactly
// the slices it owns, so h5py/h5dump read it directly and any number of ranks
// can read it back by slices. /state holds the training position; attributes
// record the format, the configs, the base model's fingerprint, the world
// size and the strategy. Datasets are chunked with Fletcher-32 checksums.
//
// Commit protocol (the README's "Checkpoints and preemption" section): write
// into step_N.tmp.<job>, H5Fflush(GLOBAL) then close, agree with an
// all-reduce, then rank 0 fsyncs the manifest, renames the folder, fsyncs the
// parent and atomically replaces `latest`. A crash at any point leaves the
// previous checkpoint intact.
//
// Every collective goes through an MpiCommunicator (a duplicate of the one
// given, so checkpoint traffic is not counted as FSDP's); MPI-IO opens the
// file on its native MPI_Comm.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

constexpr int kCheckpointFormat = 1;

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
  std::string data_path;          // must match unless allow_data_change
  int64_t seq_len = 0;            // data.seq_len; likewise
  bool allow_data_change = false; // checkpoint.allow_data_change
  std::string strategy;           // informational: resharding is allowed
  std::string effective_config;   // informational
};

// A checkpoint that cannot be used (missing, truncated, corrupt, mismatched).
class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& msg) : Error(msg, kExitBadCheckpoint) {}
};

class MpiCommunicator;

class CheckpointManager {
 public:
  // Collective over `comm`, the MPI communicator of every rank that holds
  // shards (the world). keep_last >= 2.
  CheckpointManager(const MpiCommunicator& comm, std::string dir, int keep_last);
  ~CheckpointManager();

  // Rank 0 removes step_*.tmp.* folders left by crashed saves.
  void remove_stale();
  // Collective: writes and commits step_<state.step>; returns its path.
  std::string save(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id);
  // Candidates for `resume = auto`: the one `latest` names, then every other
  // committed step folder, newest first.
  std::vector<std::string> auto_candidates() const;
  // Collective: loads a checkpoint into the shards. Throws CheckpointError
  // (every rank alike) when it is unusable; a mismatch with `expect` is a
  // user error naming both values.
  TrainState load(const std::string& path, Fsdp& fsdp, Backend& be, const RunIdentity& expect);

  const std::string& dir() const { return dir_; }
  double last_save_seconds() const { return last_save_s_; }
  uint64_t last_save_bytes() const { return last_save_bytes_; }

 private:
  // Every rank learns whether any rank failed, and the first failure's message.
  void agree_or_throw(bool failed, const std::string& message, bool as_checkpoint_error);
  void write_state_file(const std::string& path, Fsdp& fsdp, Backend& be, const TrainState& state,
                        const RunIdentity& id, bool kill_me);
  void commit(const std::string& tmp_dir, const std::string& final_dir, const TrainState& state,
              const RunIdentity& id);

  std::unique_ptr<MpiCommunicator> comm_;
  std::string dir_;
  int keep_last_;
  double last_save_s_ = 0;
  uint64_t last_save_bytes_ = 0;
};

// A cheap fingerprint of an HF model directory: config.json, every
// safetensors header and size, and 16 sampled 4 KiB blocks of each file's
// data (hashing all of a 140 GB 70B model at every start-up is too slow).
std::string model_fingerprint(const std::string& model_dir);

}  // namespace llamaft
