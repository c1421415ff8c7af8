// The commit protocol and the asynchronous save (checkpoint.hpp), over the
// format (h5_format.hpp) and the shard I/O (shard_io.hpp).
#include "checkpoint/checkpoint.hpp"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "checkpoint/h5_format.hpp"
#include "checkpoint/shard_io.hpp"
#include "core/error.hpp"
#include "core/fault_points.hpp"
#include "core/parallel.hpp"
#include "core/util.hpp"

namespace fs = std::filesystem;

namespace llamaft {

namespace {

using Clock = std::chrono::steady_clock;

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%06lld", static_cast<long long>(step));
  return buf;
}

// Committed step folders (no .tmp), sorted by step ascending.
std::vector<std::pair<int64_t, std::string>> committed_steps(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    if (!fs::exists(e.path() / "manifest.json")) continue;  // never committed
    char* end = nullptr;
    const long long step = std::strtoll(name.c_str() + 5, &end, 10);
    if (*end == '\0') out.emplace_back(step, e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

// One save between prepare() and its commit.
struct PendingSave {
  TrainState state;
  std::string strategy, tmp_dir, final_dir;
  ShardWrite write;  // this rank's part (write.path: the file)
  Clock::time_point t0;
  bool async = false;
  double stall_s = 0;
  // kWriting: every rank's writer runs; kCommitting: rank 0 commits.
  enum Phase { kWriting, kCommitting } phase = kWriting;
  // The running phase's results; `done` is set last.
  std::string error;
  std::vector<BlockPart> parts;  // once gathered, rank 0 holds every rank's
  uint64_t total_bytes = 0;      // written by every rank
  std::thread worker;
  std::atomic<bool> done{false};
};

namespace {

// Rank 0: the folder, and the file with every dataset allocated but
// unwritten (its offsets into p.write.offsets), and the space reserved.
void create_file(PendingSave& p, const RunIdentity& id, int world_size) {
  std::error_code ec;
  fs::remove_all(p.tmp_dir, ec);
  fs::create_directories(p.tmp_dir, ec);
  if (ec) throw CheckpointError(save_failure(p.state.step, "creating the folder", p.tmp_dir, ec.message()));
  p.write.offsets = create_state_file(p.write.path, p.write.specs, p.state, id, world_size);
  reserve_file_space(p.write.path, p.state.step);
}

// The writer's phase: this rank's shards, then `done`.
void run_writer(PendingSave& p, int threads) {
  write_shards(p.write, threads);
  p.error = p.write.error;
  p.done.store(true, std::memory_order_release);
}

}  // namespace

CheckpointManager::CheckpointManager(Communicator& comm, std::string dir, int keep_last)
    : comm_(comm.split(0, comm.rank())),  // the same ranks, in order, counted apart
      dir_(std::move(dir)),
      keep_last_(keep_last) {
  LLAMAFT_REQUIRE(keep_last_ >= 2, "checkpoint.keep_last must be at least 2 (got ", keep_last_, ")");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // our messages replace HDF5's stack dumps
}

CheckpointManager::~CheckpointManager() {
  // Uncommitted (or committed but not agreed): the next start's remove_stale
  // and `latest` sort it out.
  if (pending_ && pending_->worker.joinable()) pending_->worker.join();
}

void CheckpointManager::agree_or_throw(bool failed, const std::string& message, bool as_checkpoint_error) {
  const int rank = comm_->rank(), size = comm_->size();
  // The lowest failing rank r wins: the maximum of size - r (0 when none failed).
  int64_t key = failed ? size - rank : 0;
  comm_->all_reduce_max(&key, 1);
  if (key == 0) return;
  const int first = size - static_cast<int>(key);
  char buf[2048] = {0};
  if (rank == first) std::snprintf(buf, sizeof(buf), "%s", message.c_str());
  comm_->broadcast(buf, sizeof(buf), first);
  // Every rank throws (the resume fallback catches CheckpointError on all of
  // them alike); only the rank that found it prints it.
  if (as_checkpoint_error) {
    CheckpointError e(buf);
    if (rank != first) e.mark_reported_elsewhere();
    throw e;
  }
  Error e(buf);
  if (rank != first) e.mark_reported_elsewhere();
  throw e;
}

void CheckpointManager::remove_stale() {
  if (comm_->rank() == 0) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("step_", 0) == 0 && name.find(".tmp.") != std::string::npos) {
        std::fprintf(stderr, "llamaft checkpoint: removing %s left by an interrupted save\n", e.path().c_str());
        fs::remove_all(e.path(), ec);
      }
      // An earlier copy moved aside by a commit that died before its
      // replacement was in place: it is still the checkpoint.
      const size_t replaced = name.find(".replaced.");
      if (name.rfind("step_", 0) == 0 && replaced != std::string::npos) {
        const fs::path final_dir = e.path().parent_path() / name.substr(0, replaced);
        if (fs::exists(final_dir / "manifest.json", ec)) {
          fs::remove_all(e.path(), ec);
        } else {
          std::fprintf(stderr, "llamaft checkpoint: restoring %s, moved aside by an interrupted save\n",
                       final_dir.c_str());
          fs::remove_all(final_dir, ec);
          fs::rename(e.path(), final_dir, ec);
        }
      }
    }
  }
  comm_->barrier();
}

void CheckpointManager::agree_or_abandon(bool failed, const std::string& message, const std::string& tmp_dir) {
  int64_t any = failed ? 1 : 0;
  comm_->all_reduce_max(&any, 1);
  if (any && comm_->rank() == 0) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
  }
  agree_or_throw(failed, message, true);
}

size_t CheckpointManager::staging_bytes_for(const Fsdp& fsdp) {
  if (!fsdp.writes_exports()) return 0;
  size_t floats = 0;
  for (int u = 0; u < fsdp.num_units(); ++u)
    if (fsdp.trainable(u))
      for_each_piece(fsdp.layout().units()[u], fsdp.geometry(u),
                     [&](const TensorSlot&, int64_t, int64_t count, int64_t) { floats += static_cast<size_t>(count); });
  return 3 * floats * sizeof(float);
}

void CheckpointManager::plan_pieces(PendingSave& p, Fsdp& fsdp, Backend& be, bool stage, bool defer_copies) {
  ShardWrite& w = p.write;
  const DatasetTable table = dataset_table(fsdp);
  w.specs = table.specs;
  // This rank's pieces (replicas other than 0 write nothing), from the
  // shards themselves, or from the staging copy of them.
  struct Source {
    const float* shard;
    size_t floats;
  };
  std::vector<Source> sources;
  if (fsdp.writes_exports()) {
    const auto& units = fsdp.layout().units();
    for (int u = 0; u < fsdp.num_units(); ++u) {
      if (!fsdp.trainable(u)) continue;
      const float* shards[3] = {fsdp.master(u), fsdp.exp_avg(u), fsdp.exp_avg_sq(u)};
      for_each_piece(units[u], fsdp.geometry(u), [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t src) {
        const size_t i = table.first[u] + 3 * static_cast<size_t>(&slot - units[u].tensors.data());
        for (int k = 0; k < 3; ++k) {
          w.pieces.push_back({static_cast<uint32_t>(i + k), static_cast<uint64_t>(elem) * sizeof(float),
                              static_cast<uint64_t>(count) * sizeof(float),
                              reinterpret_cast<const char*>(shards[k] + src)});
          sources.push_back({shards[k] + src, static_cast<size_t>(count)});
        }
      });
    }
  }
  if (stage) {
    size_t floats = 0;
    for (const auto& s : sources) floats += s.floats;
    if (staging_.size() < floats) staging_.resize(floats);  // kept for the next save
    // The snapshot, in pieces of at most 8 MiB.
    size_t cursor = 0;
    for (size_t i = 0; i < sources.size(); ++i) {
      float* to = staging_.data() + cursor;
      w.pieces[i].src = reinterpret_cast<const char*>(to);
      for (size_t off = 0; off < sources[i].floats; off += kWriteBytes / 2 / sizeof(float))
        w.copies.push_back({sources[i].shard + off, to + off,
                            std::min(kWriteBytes / 2 / sizeof(float), sources[i].floats - off)});
      cursor += sources[i].floats;
    }
    if (!be.host_resident()) {
      for (const auto& c : w.copies) be.to_host(c.to, c.from, c.floats * sizeof(float));
      w.copies.clear();
    } else if (!defer_copies) {
      parallel_for_each<int>(static_cast<int64_t>(w.copies.size()), true, [&](int&, int64_t i) {
        std::memcpy(w.copies[i].to, w.copies[i].from, w.copies[i].floats * sizeof(float));
      });
      w.copies.clear();
    }
  }
  w.copied.store(w.copies.empty(), std::memory_order_release);
}

std::unique_ptr<PendingSave> CheckpointManager::prepare(Fsdp& fsdp, Backend& be, const TrainState& state,
                                                        const RunIdentity& id, bool stage, bool defer_copies) {
  const auto t0 = Clock::now();
  const int rank = comm_->rank(), size = comm_->size();
  long long job = 0;
  if (rank == 0) {
    const char* slurm = std::getenv("SLURM_JOB_ID");
    job = slurm ? std::atoll(slurm) : static_cast<long long>(getpid());
  }
  comm_->broadcast(&job, sizeof(job), 0);

  auto p = std::make_unique<PendingSave>();
  p->t0 = t0;
  p->state = state;
  p->strategy = id.strategy;
  p->final_dir = dir_ + "/" + step_name(state.step);
  p->tmp_dir = p->final_dir + ".tmp." + std::to_string(job);
  p->write.step = state.step;
  p->write.path = p->tmp_dir + "/state.h5";
  plan_pieces(*p, fsdp, be, stage, defer_copies);

  std::string error;
  if (rank == 0) {
    try {
      create_file(*p, id, size);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_or_abandon(!error.empty(), error, p->tmp_dir);
  std::vector<uint64_t>& offsets = p->write.offsets;
  offsets.resize(2 * p->write.specs.size());
  comm_->broadcast(offsets.data(), offsets.size() * sizeof(uint64_t), 0);
  const auto kill_step = fault::armed(fault::Point::kKillInSave);  // tests: SIGKILL mid-save
  p->write.kill_me = kill_step && *kill_step == state.step && rank == size - 1;
  const auto enospc_step = fault::armed(fault::Point::kSaveEnospc);
  p->write.enospc = enospc_step && *enospc_step == state.step && rank == size - 1;
  p->write.delay_ms = fault::armed(fault::Point::kSavePieceDelay).value_or(0);
  return p;
}

// Rank 0, once every rank's data is durable: fsync the file (its size and
// the checksums) and the manifest, rename the folder into place, replace
// `latest`, then drop the oldest checkpoints beyond keep_last.
void CheckpointManager::commit(const PendingSave& p) {
  fsync_path(p.write.path);
  {
    std::ofstream m(p.tmp_dir + "/manifest.json");
    m << "{\"format_version\": " << kCheckpointFormat << ", \"step\": " << p.state.step
      << ", \"world_size\": " << comm_->size() << ", \"strategy\": \"" << p.strategy
      << "\", \"files\": [\"state.h5\"], \"bytes\": " << p.total_bytes << "}\n";
    m.flush();
    if (!m) throw CheckpointError(save_failure(p.state.step, "writing", p.tmp_dir + "/manifest.json", "write failed"));
  }
  fsync_path(p.tmp_dir + "/manifest.json");
  fsync_path(p.tmp_dir);
  const std::string old_copy = rename_into_place(p);
  fsync_path(dir_);
  write_file_durably(dir_ + "/latest", step_name(p.state.step) + "\n");  // temp, fsync, rename, fsync dir_
  std::error_code ec;
  if (!old_copy.empty()) fs::remove_all(old_copy, ec);
  // Only after the commit: drop the oldest beyond keep_last.
  auto steps = committed_steps(dir_);
  for (size_t i = 0; i + keep_last_ < steps.size(); ++i) fs::remove_all(steps[i].second, ec);
}

// A same-step folder (a re-run of a finished job, or a resume from an older
// step) is never removed before the new one is in place: the two are
// swapped atomically (renameat2 RENAME_EXCHANGE) and the old copy, now
// under the tmp name, is dropped after `latest` is written. Where the
// filesystem cannot exchange (NFS, some Lustre versions), the old folder
// is first renamed to step_N.replaced.<job>, which remove_stale() puts back
// if the job dies before the new one is in place.
std::string CheckpointManager::rename_into_place(const PendingSave& p) {
  std::error_code ec;
  if (!fs::exists(p.final_dir, ec)) {
    fs::rename(p.tmp_dir, p.final_dir, ec);
    if (ec) throw CheckpointError(save_failure(p.state.step, "renaming into place", p.tmp_dir, ec.message()));
    return "";
  }
  const bool fault_rename = fault::armed(fault::Point::kCommitRenameFail) == p.state.step;
  const bool fault_kill = fault::armed(fault::Point::kKillInCommit) == p.state.step;
  if (!fault_rename && !fault_kill &&
      ::renameat2(AT_FDCWD, p.tmp_dir.c_str(), AT_FDCWD, p.final_dir.c_str(), RENAME_EXCHANGE) == 0)
    return p.tmp_dir;
  const std::string old_copy = p.final_dir + ".replaced" + p.tmp_dir.substr(p.final_dir.size() + 4);  // step_N.replaced.<job>
  fs::rename(p.final_dir, old_copy, ec);
  if (ec) throw CheckpointError(save_failure(p.state.step, "moving the earlier copy aside", p.final_dir, ec.message()));
  if (fault_kill) {
    fsync_path(dir_);
    std::raise(SIGKILL);
  }
  if (fault_rename) ec = std::make_error_code(std::errc::io_error);
  else fs::rename(p.tmp_dir, p.final_dir, ec);
  if (ec) {
    std::error_code back;
    fs::rename(old_copy, p.final_dir, back);  // the earlier copy stays the checkpoint
    throw CheckpointError(save_failure(p.state.step, "renaming into place", p.tmp_dir, ec.message()));
  }
  return old_copy;
}

void CheckpointManager::finish_writes(PendingSave& p) {
  if (p.worker.joinable()) p.worker.join();
  agree_or_abandon(!p.error.empty(), p.error, p.tmp_dir);
  // Rank 0 gathers every writer's block checksums.
  const int rank = comm_->rank(), size = comm_->size();
  const std::vector<BlockPart>& mine = p.write.parts;
  LLAMAFT_CHECK(mine.size() * sizeof(BlockPart) < (1u << 31), "checkpoint: too many checksum blocks on one rank");
  uint64_t my_bytes = mine.size() * sizeof(BlockPart);
  std::vector<uint64_t> counts(rank == 0 ? size : 0);
  comm_->gather(&my_bytes, counts.data(), sizeof(my_bytes), 0);
  std::vector<BlockPart> all;
  if (rank == 0) {
    uint64_t total = 0;
    for (uint64_t c : counts) total += c;
    LLAMAFT_CHECK(total < (1u << 31), "checkpoint: too many checksum blocks");
    all.resize(total / sizeof(BlockPart));
  }
  comm_->gatherv(mine.data(), my_bytes, all.data(), counts, 0);
  p.parts = std::move(all);  // rank 0: every rank's; the others: none
  double bytes = static_cast<double>(p.write.bytes);  // exact below 2^53 bytes
  comm_->all_reduce_sum(&bytes, 1);
  p.total_bytes = static_cast<uint64_t>(bytes);
  p.error.clear();
  p.phase = PendingSave::kCommitting;
  p.done.store(rank != 0, std::memory_order_release);
}

void CheckpointManager::commit_on_rank0(PendingSave& p) {
  try {
    write_checksum_tables(p.write, p.parts);
    commit(p);
  } catch (const std::exception& e) {
    p.error = e.what();
  }
  p.done.store(true, std::memory_order_release);
}

void CheckpointManager::finish_commit(PendingSave& p) {
  if (p.worker.joinable()) p.worker.join();
  agree_or_abandon(!p.error.empty(), p.error, p.tmp_dir);
  last_.path = p.final_dir;
  last_.step = p.state.step;
  last_.async = p.async;
  last_.bytes = p.total_bytes;
  last_.seconds = std::chrono::duration<double>(Clock::now() - p.t0).count();
  last_.stall_s = p.async ? p.stall_s : last_.seconds;
}

std::string CheckpointManager::save(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id) {
  finish_in_flight();
  // Written from the shards where they are host memory, else staged.
  std::unique_ptr<PendingSave> p = prepare(fsdp, be, state, id, !be.host_resident(), false);
  run_writer(*p, omp_get_max_threads());  // training waits: every thread writes
  finish_writes(*p);
  if (comm_->rank() == 0) commit_on_rank0(*p);
  finish_commit(*p);
  return last_.path;
}

void CheckpointManager::before_update() {
  if (!pending_ || pending_->write.copied.load(std::memory_order_acquire)) return;
  const auto t = Clock::now();
  while (!pending_->write.copied.load(std::memory_order_acquire))
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  pending_->stall_s += std::chrono::duration<double>(Clock::now() - t).count();
}

void CheckpointManager::reserve_staging(const Fsdp& fsdp) {
  const size_t floats = staging_bytes_for(fsdp) / sizeof(float);
  if (staging_.size() < floats) staging_.resize(floats);  // zero-filled: its pages are faulted in now
}

void CheckpointManager::begin_async_save(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id) {
  finish_in_flight();
  // Host shards are copied by the writer thread, during the next step's
  // forward and backward, which only read them; before_update() waits for it.
  pending_ = prepare(fsdp, be, state, id, true, true);
  pending_->async = true;
  pending_->stall_s = std::chrono::duration<double>(Clock::now() - pending_->t0).count();
  PendingSave* p = pending_.get();
  pending_->worker = std::thread([p] { run_writer(*p, 1); });  // beside training: one thread
}

// Two phases, each ended by an all-reduce at a step boundary: every rank's
// data durable (then the checksums are gathered), and rank 0's commit (the
// checksum tables, the fsyncs, the renames) done on a thread of its own.
bool CheckpointManager::poll() {
  if (!pending_) return false;
  const auto t = Clock::now();
  PendingSave& p = *pending_;
  int64_t busy = p.done.load(std::memory_order_acquire) ? 0 : 1;
  comm_->all_reduce_max(&busy, 1);
  const auto since = [&] { return std::chrono::duration<double>(Clock::now() - t).count(); };
  if (busy) {
    p.stall_s += since();
    return false;
  }
  if (p.phase == PendingSave::kWriting) {
    finish_writes(p);
    if (comm_->rank() == 0) {
      PendingSave* raw = &p;
      p.worker = std::thread([this, raw] { commit_on_rank0(*raw); });
    }
    p.stall_s += since();
    return false;
  }
  p.stall_s += since();
  finish_in_flight();
  return true;
}

void CheckpointManager::finish_in_flight() {
  if (!pending_) return;
  const auto t = Clock::now();
  std::unique_ptr<PendingSave> p = std::move(pending_);  // on a throw, its threads were joined first
  if (p->phase == PendingSave::kWriting) {
    finish_writes(*p);
    if (comm_->rank() == 0) commit_on_rank0(*p);
  }
  p->stall_s += std::chrono::duration<double>(Clock::now() - t).count();
  finish_commit(*p);
}

std::vector<std::string> CheckpointManager::auto_candidates() const {
  std::vector<std::string> out;
  std::ifstream latest(dir_ + "/latest");
  std::string name;
  if (latest >> name && fs::is_directory(dir_ + "/" + name)) out.push_back(dir_ + "/" + name);
  auto steps = committed_steps(dir_);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it)
    if (std::find(out.begin(), out.end(), it->second) == out.end()) out.push_back(it->second);
  return out;
}

TrainState CheckpointManager::load(const std::string& ckpt_dir, Fsdp& fsdp, Backend& be, const RunIdentity& expect) {
  const std::string path = ckpt_dir + "/state.h5";
  bool exists = fs::exists(path);
  agree_or_throw(!exists, str_cat("checkpoint '", ckpt_dir, "' has no state.h5"), true);
  H5Handle fapl = file_access();
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  agree_or_throw(fid < 0, str_cat("checkpoint '", path, "' cannot be opened: truncated or not an HDF5 file"), true);
  H5Handle file(fid, H5Fclose);
  const std::string where = "checkpoint '" + ckpt_dir + "'";
  const int64_t format = check_checkpoint(file.get(), path, where, expect, comm_->rank() == 0);
  int fd = -1;
  if (format == 2) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    agree_or_throw(fd < 0, str_cat(where, ": cannot open ", path, ": ", std::strerror(errno)), true);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};
  const std::string error = read_shards(file.get(), fd, format, fsdp, be, where);
  agree_or_throw(!error.empty(), error, true);
  return read_train_state(file.get(), path, where);
}

}  // namespace llamaft
