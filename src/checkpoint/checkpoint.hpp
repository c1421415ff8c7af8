// Sharded HDF5 checkpoints at disk speed: the commit protocol and the
// asynchronous save. The file's format is in h5_format.hpp, the ranks'
// writes and verified reads in shard_io.hpp, and when to save in
// checkpointer.hpp.
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
// Every collective goes through a Communicator (a duplicate of the one
// given, so checkpoint traffic is not counted as FSDP's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "checkpoint/state.hpp"
#include "comm/communicator.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

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
  // Collective over `comm`, the communicator of every rank that holds
  // shards (the MPI world). keep_last >= 2.
  CheckpointManager(Communicator& comm, std::string dir, int keep_last);
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
  int rank() const { return comm_->rank(); }

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
  // This rank's pieces of p, pointing at the shards, or at staging_ (then
  // with the copies that fill it) when `stage`.
  void plan_pieces(PendingSave& p, Fsdp& fsdp, Backend& be, bool stage, bool defer_copies);
  // Collective: joins the writers, agrees on their outcome, gathers the
  // block checksums on rank 0 and moves p to its commit phase.
  void finish_writes(PendingSave& p);
  // Rank 0 (on any thread; no MPI): the checksum tables and commit().
  void commit_on_rank0(PendingSave& p);
  // Collective: joins rank 0's commit and agrees on its outcome.
  void finish_commit(PendingSave& p);
  void commit(const PendingSave& p);
  // Rank 0, at commit: puts tmp_dir in final_dir's place; returns the
  // earlier copy to drop once `latest` names the new one ("" when none).
  std::string rename_into_place(const PendingSave& p);

  std::unique_ptr<Communicator> comm_;
  std::string dir_;
  int keep_last_;
  SaveReport last_;
  std::vector<float> staging_;
  std::unique_ptr<PendingSave> pending_;
};

}  // namespace llamaft
