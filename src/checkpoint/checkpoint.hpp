// Sharded HDF5 checkpoints at disk speed.
//
// checkpoint.dir/step_000123/state.h5 holds every tensor at its Hugging Face
// name in its full logical shape (/model/<name> fp32 master weights,
// /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>), so h5py/h5dump read it
// directly and any number of ranks can read it back by slices. /state holds
// the training position; attributes record the format, the configs, the base
// model's fingerprint, the world size and the strategy.
//
// Format 2 (this version writes it; format 1's chunked Fletcher-32 files are
// still read): datasets are contiguous and allocated when rank 0 creates the
// file (serial HDF5, no data written, space reserved with fallocate); each
// rank then pwrite()s the slices it owns at their file offsets and
// fdatasync()s, with no MPI-IO and no collective inside a write, so a rank
// whose write fails can never leave the others waiting in one. Every 1 MiB
// block of a dataset has a CRC-32C in /checksums/<group>/<name> (ranks
// checksum their parts of a block; rank 0 joins them with crc32c_combine),
// verified on every load.
//
// Commit protocol (the README's "Checkpoints and preemption" section): write
// into step_N.tmp.<job>, agree with an all-reduce that every rank's data is
// durable, then rank 0 writes the checksums, fsyncs the file and the
// manifest, renames the folder, fsyncs the parent and atomically replaces
// `latest`. A crash at any point leaves the previous checkpoint intact.
//
// Asynchronous saves: begin_async_save() copies what this rank writes into
// host staging at the step boundary and a worker thread writes it while
// training goes on; poll() at each later step boundary commits it once every
// rank's writer finished. The worker makes no MPI calls (every collective
// stays on the main thread, MPI_THREAD_FUNNELED) and no HDF5 calls. At most
// one save is in flight.
//
// Every collective goes through an MpiCommunicator (a duplicate of the one
// given, so checkpoint traffic is not counted as FSDP's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "parallel/fsdp.hpp"

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

class MpiCommunicator;

// What the last committed save took.
struct SaveReport {
  std::string path;
  int64_t step = 0;
  bool async = false;
  double seconds = 0;  // from the step boundary to the commit
  double stall_s = 0;  // of that, the time training was stopped for it
  uint64_t bytes = 0;  // data bytes written by every rank together
};

struct PendingSave;

class CheckpointManager {
 public:
  // Collective over `comm`, the MPI communicator of every rank that holds
  // shards (the world). keep_last >= 2.
  CheckpointManager(const MpiCommunicator& comm, std::string dir, int keep_last);
  ~CheckpointManager();  // joins a running writer without committing its save

  // Rank 0 removes step_*.tmp.* folders left by crashed saves.
  void remove_stale();
  // Collective: writes and commits step_<state.step>; returns its path.
  // Waits first for a save in flight.
  std::string save(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id);
  // Collective: snapshots this rank's part of the state into host staging
  // (kept for the next save), creates the file and writes it in the
  // background. Waits first for a save in flight.
  void begin_async_save(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id);
  bool in_flight() const { return pending_ != nullptr; }
  // Call before anything changes the shards (the optimizer step): waits
  // until the save in flight has its copy of them. No MPI.
  void before_update();
  // Collective, at a step boundary while a save is in flight: commits it once
  // every rank's writer is done; true when it committed.
  bool poll();
  // Collective: waits for the save in flight and commits it (none: no-op).
  void finish_in_flight();
  // Allocates (and faults in) the staging of asynchronous saves now, so the
  // first save does not pay for it at a step boundary.
  void reserve_staging(const Fsdp& fsdp);
  // The bytes one asynchronous save stages on this rank (its written slices
  // of the trainable units' weights and both moments).
  static size_t staging_bytes_for(const Fsdp& fsdp);
  // Candidates for `resume = auto`: the one `latest` names, then every other
  // committed step folder, newest first.
  std::vector<std::string> auto_candidates() const;
  // Collective: loads a checkpoint into the shards. Throws CheckpointError
  // (every rank alike) when it is unusable; a mismatch with `expect` is a
  // user error naming both values.
  TrainState load(const std::string& path, Fsdp& fsdp, Backend& be, const RunIdentity& expect);

  const std::string& dir() const { return dir_; }
  const SaveReport& last_save() const { return last_; }

 private:
  // Every rank learns whether any rank failed, and the first failure's message.
  void agree_or_throw(bool failed, const std::string& message, bool as_checkpoint_error);
  // Like agree_or_throw, but rank 0 first removes `tmp_dir` when any failed.
  void agree_or_abandon(bool failed, const std::string& message, const std::string& tmp_dir);
  // Collective: everything up to the point where each rank's writer can run.
  // `stage`: write from a host copy; `defer_copies`: the writer thread
  // takes that copy (host shards only).
  std::unique_ptr<PendingSave> prepare(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id,
                                       bool stage, bool defer_copies);
  // Collective: joins the writers, agrees on their outcome, gathers the
  // block checksums on rank 0 and moves p to its commit phase.
  void finish_writes(PendingSave& p);
  // Rank 0 (on any thread; no MPI): the checksum tables and commit().
  void commit_on_rank0(PendingSave& p);
  // Collective: joins rank 0's commit and agrees on its outcome.
  void finish_commit(PendingSave& p);
  void commit(const PendingSave& p);

  std::unique_ptr<MpiCommunicator> comm_;
  std::string dir_;
  int keep_last_;
  SaveReport last_;
  std::vector<float> staging_;
  std::unique_ptr<PendingSave> pending_;
};

// A cheap fingerprint of an HF model directory: config.json, every
// safetensors header and size, and 16 sampled 4 KiB blocks of each file's
// data (hashing all of a 140 GB 70B model at every start-up is too slow).
std::string model_fingerprint(const std::string& model_dir);

// The training data's identity by content, not by how its path is spelled: a
// prepared split's manifest.json and the sizes of its files, or a JSONL
// file's size, plus sampled 4 KiB blocks of every file (as model_fingerprint).
std::string data_fingerprint(const std::string& data_path);

}  // namespace llamaft
