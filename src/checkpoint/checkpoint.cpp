#include "checkpoint/checkpoint.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <fstream>
#include <sstream>

#include "comm/mpi_comm.hpp"
#include "core/error.hpp"
#include "core/fault_points.hpp"
#include "core/util.hpp"
#include "io/hf_tensors.hpp"

namespace fs = std::filesystem;

namespace llamaft {

namespace {

// Chunks of ~4 MiB: Fletcher-32 checksums per chunk, and few enough chunks
// that HDF5's collective filtered writes stay cheap.
constexpr hsize_t kChunkElems = hsize_t(1) << 20;

// ---- small HDF5 helpers ---------------------------------------------------------------

// Owns an hid_t and closes it with the right H5?close.
class H5Handle {
 public:
  H5Handle() = default;
  H5Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  ~H5Handle() {
    if (id_ >= 0 && closer_) closer_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*closer_)(hid_t) = nullptr;
};

#define H5_CHECK(expr, ...)                                                                    \
  do {                                                                                         \
    if ((expr) < 0) throw CheckpointError(str_cat(where_prefix(), __VA_ARGS__, " (HDF5 call `", \
                                                  #expr, "` failed at ", __FILE__, ":", __LINE__, ")")); \
  } while (0)

H5Handle checked(hid_t id, herr_t (*closer)(hid_t), const std::string& what) {
  if (id < 0) throw CheckpointError(str_cat(where_prefix(), what));
  return H5Handle(id, closer);
}

H5Handle file_access(MPI_Comm comm) {
  H5Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate failed");
  H5_CHECK(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), "cannot use MPI-IO");
  H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "cannot set format bounds");
  H5_CHECK(H5Pset_all_coll_metadata_ops(fapl.get(), true), "cannot set collective metadata reads");
  H5_CHECK(H5Pset_coll_metadata_write(fapl.get(), true), "cannot set collective metadata writes");
  return fapl;
}

// Writes to filtered (checksummed) datasets must be collective in HDF5 1.10;
// reads may be independent, which is faster when each rank reads its slices.
H5Handle transfer(H5FD_mpio_xfer_t mode) {
  H5Handle dxpl = checked(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate failed");
  H5_CHECK(H5Pset_dxpl_mpio(dxpl.get(), mode), "cannot set the MPI-IO transfer mode");
  return dxpl;
}

// Selects the row-major flat range [begin, begin + count) of a 1-D or 2-D
// dataspace as a union of at most three blocks (count 0 selects nothing).
void select_flat_range(hid_t space, const std::vector<int64_t>& shape, int64_t begin, int64_t count) {
  if (count == 0) {
    H5_CHECK(H5Sselect_none(space), "selection failed");
    return;
  }
  if (shape.size() == 1) {
    hsize_t start = begin, n = count;
    H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr), "selection failed");
    return;
  }
  const int64_t cols = shape[1], end = begin + count;
  const int64_t r0 = begin / cols, c0 = begin % cols, r1 = end / cols, c1 = end % cols;
  bool first = true;
  auto add = [&](int64_t row, int64_t col, int64_t rows, int64_t n) {
    if (rows <= 0 || n <= 0) return;
    hsize_t start[2] = {hsize_t(row), hsize_t(col)}, cnt[2] = {hsize_t(rows), hsize_t(n)};
    H5_CHECK(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, start, nullptr, cnt, nullptr),
             "selection failed");
    first = false;
  };
  if (r0 == r1) {
    add(r0, c0, 1, c1 - c0);
    return;
  }
  int64_t full_from = r0;
  if (c0 > 0) {
    add(r0, c0, 1, cols - c0);
    full_from = r0 + 1;
  }
  add(full_from, 0, r1 - full_from, cols);
  add(r1, 0, 1, c1);
}

void write_attr_i64(hid_t obj, const char* name, int64_t v) {
  H5Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate failed");
  H5Handle a = checked(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                       str_cat("cannot create attribute ", name));
  H5_CHECK(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), "cannot write attribute ", name);
}

void write_attr_str(hid_t obj, const char* name, const std::string& v) {
  H5Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy failed");
  H5_CHECK(H5Tset_size(type.get(), std::max<size_t>(1, v.size())), "H5Tset_size failed");
  H5Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate failed");
  H5Handle a = checked(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                       str_cat("cannot create attribute ", name));
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  H5_CHECK(H5Awrite(a.get(), type.get(), buf.data()), "cannot write attribute ", name);
}

int64_t read_attr_i64(hid_t obj, const char* name, const std::string& path) {
  H5Handle a = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose,
                       str_cat(path, ": checkpoint has no '", name, "' attribute (not a llamaft checkpoint?)"));
  int64_t v = 0;
  H5_CHECK(H5Aread(a.get(), H5T_NATIVE_INT64, &v), path, ": cannot read attribute ", name);
  return v;
}

std::string read_attr_str(hid_t obj, const char* name, const std::string& path) {
  H5Handle a = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose,
                       str_cat(path, ": checkpoint has no '", name, "' attribute (not a llamaft checkpoint?)"));
  H5Handle type = checked(H5Aget_type(a.get()), H5Tclose, "H5Aget_type failed");
  const size_t n = H5Tget_size(type.get());
  std::string v(n, '\0');
  H5_CHECK(H5Aread(a.get(), type.get(), v.data()), path, ": cannot read attribute ", name);
  while (!v.empty() && v.back() == '\0') v.pop_back();
  return v;
}

// The bytes a checkpoint of these shards takes: weights and both AdamW
// moments in fp32, plus HDF5's metadata (chunk indexes, checksums, the
// attributes), bounded by 1% and 4 MiB.
uint64_t checkpoint_bytes(Fsdp& fsdp) {
  uint64_t elements = 0;
  for (int u = 0; u < fsdp.num_units(); ++u)
    if (fsdp.trainable(u)) elements += static_cast<uint64_t>(fsdp.layout().units()[u].numel);
  const uint64_t data = 3 * 4 * elements;
  return data + data / 100 + (4u << 20);
}

// "" when `dir`'s filesystem has room for `need` bytes, else the message.
std::string space_shortfall(const std::string& dir, uint64_t need, int64_t step) {
  struct statvfs st;
  if (statvfs(dir.c_str(), &st) != 0) return "";  // nothing to say: the writes will tell
  const uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  if (free_bytes >= need) return "";
  return str_cat("checkpoint of step ", step, " at '", dir, "' (host ", process_host(), ", rank ", process_rank(),
                 "): No space left on device: it needs ", need / 1048576.0, " MiB and ", free_bytes / 1048576.0,
                 " MiB are free; nothing was written and the previous checkpoint is intact");
}

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

std::string model_fingerprint(const std::string& model_dir) {
  // FNV-1a over config.json and each safetensors file's header and size.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  std::vector<std::string> files = {"config.json"};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec))
    if (e.path().extension() == ".safetensors") files.push_back(e.path().filename().string());
  std::sort(files.begin() + 1, files.end());
  for (const auto& f : files) {
    std::ifstream in(model_dir + "/" + f, std::ios::binary);
    if (!in) continue;
    mix(f.data(), f.size());
    if (f == "config.json") {
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string s = ss.str();
      mix(s.data(), s.size());
      continue;
    }
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string header(std::min<uint64_t>(n, 100ull << 20), '\0');
    in.read(header.data(), static_cast<std::streamsize>(header.size()));
    mix(header.data(), header.size());
    const uint64_t size = fs::file_size(model_dir + "/" + f, ec);
    mix(&size, sizeof(size));
    // 16 evenly spaced 4 KiB samples of the data: different weights with the
    // same shapes (another seed, another fine-tune) get another fingerprint.
    std::string block(4096, '\0');
    for (int k = 0; k < 16 && size > 8 + n; ++k) {
      const uint64_t data = size - 8 - n;
      in.clear();
      in.seekg(static_cast<std::streamoff>(8 + n + data * k / 16));
      in.read(block.data(), static_cast<std::streamsize>(std::min<uint64_t>(4096, data)));
      mix(block.data(), static_cast<size_t>(in.gcount()));
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

CheckpointManager::CheckpointManager(const MpiCommunicator& comm, std::string dir, int keep_last)
    : comm_(comm.duplicate()), dir_(std::move(dir)), keep_last_(keep_last) {
  LLAMAFT_REQUIRE(keep_last_ >= 2, "checkpoint.keep_last must be at least 2 (got ", keep_last_, ")");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // our messages replace HDF5's stack dumps
}

CheckpointManager::~CheckpointManager() = default;

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
    }
  }
  comm_->barrier();
}

// Collective: every rank writes its slices of the weights and both moments
// into `path`, plus the state and identity attributes; the file is flushed
// (HDF5 1.10's MPI-IO driver does not fsync on close) and closed.
void CheckpointManager::write_state_file(const std::string& path, Fsdp& fsdp, Backend& be, const TrainState& state,
                                         const RunIdentity& id, bool kill_me) {
  const int size = comm_->size();
  H5Handle fapl = file_access(comm_->native());
  H5Handle file = checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
                          str_cat("cannot create checkpoint file '", path, "'"));
  H5Handle dxpl = transfer(H5FD_MPIO_COLLECTIVE);
  H5Handle g_model = checked(H5Gcreate2(file.get(), "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
  H5Handle g_optim = checked(H5Gcreate2(file.get(), "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
  H5Handle g_m = checked(H5Gcreate2(g_optim.get(), "exp_avg", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
  H5Handle g_v = checked(H5Gcreate2(g_optim.get(), "exp_avg_sq", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
  const hid_t groups[3] = {g_model.get(), g_m.get(), g_v.get()};
  const auto& layout = fsdp.layout();
  std::vector<float> host[3];
  uint64_t bytes = 0;
  int written = 0;
  for (int u = 0; u < layout.num_units(); ++u) {
    if (!fsdp.trainable(u)) continue;  // LoRA: the frozen base is identified by its fingerprint
    const ShardGeometry& g = fsdp.geometry(u);
    // Written from the shards themselves where the backend's memory is host
    // memory; otherwise through host copies (three of the largest shard).
    const float* sources[3] = {fsdp.master(u), fsdp.exp_avg(u), fsdp.exp_avg_sq(u)};
    for (int k = 0; k < 3 && !be.host_resident(); ++k) {
      host[k].resize(g.shard_size);
      be.to_host(host[k].data(), sources[k], g.shard_size * sizeof(float));
      sources[k] = host[k].data();
    }
    for (const auto& slot : layout.units()[u].tensors) {
      // This rank's piece of the tensor (replicas other than 0 write nothing).
      int64_t elem = 0, count = 0, src = 0;
      if (fsdp.writes_exports()) {
        const int64_t lo = std::max(g.begin, slot.offset), hi = std::min(g.begin + g.shard_size, slot.offset + slot.numel());
        if (lo < hi) elem = lo - slot.offset, count = hi - lo, src = lo - g.begin;
      }
      std::vector<hsize_t> dims(slot.shape.begin(), slot.shape.end()), chunk(dims);
      LLAMAFT_CHECK(dims.size() == 1 || dims.size() == 2, "checkpoint supports 1-D and 2-D tensors");
      if (dims.size() == 2) chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], kChunkElems / dims[1]));
      else chunk[0] = std::min<hsize_t>(dims[0], kChunkElems);
      H5Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate failed");
      H5_CHECK(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk failed");
      H5_CHECK(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32 failed");
      H5Handle fspace = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, "space");
      hsize_t mcount = static_cast<hsize_t>(std::max<int64_t>(count, 1));
      H5Handle mspace = checked(H5Screate_simple(1, &mcount, nullptr), H5Sclose, "space");
      if (count == 0) H5_CHECK(H5Sselect_none(mspace.get()), "selection failed");
      select_flat_range(fspace.get(), slot.shape, elem, count);
      for (int k = 0; k < 3; ++k) {
        H5Handle ds = checked(H5Dcreate2(groups[k], slot.hf_name.c_str(), H5T_IEEE_F32LE, fspace.get(), H5P_DEFAULT,
                                         dcpl.get(), H5P_DEFAULT),
                              H5Dclose, str_cat("cannot create dataset ", slot.hf_name, " in ", path));
        H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), dxpl.get(), sources[k] + src),
                 "writing ", slot.hf_name, " to ", path);
        bytes += static_cast<uint64_t>(count) * 4;
      }
      if (kill_me && ++written == 3) raise(SIGKILL);
    }
  }
  H5Handle g_state = checked(H5Gcreate2(file.get(), "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
  const hid_t s = g_state.get();
  write_attr_i64(s, "step", state.step);
  write_attr_i64(s, "consumed_rows", state.consumed_rows);
  write_attr_i64(s, "consumed_tokens", state.consumed_tokens);
  write_attr_i64(s, "skips_in_row", state.skips_in_row);
  write_attr_i64(s, "lr_schedule_step", state.step);
  write_attr_i64(s, "data_position", state.consumed_rows);
  write_attr_i64(s, "rng_seed", id.seed);  // the data order and init are pure functions of (seed, step)
  const hid_t f = file.get();
  write_attr_i64(f, "format_version", kCheckpointFormat);
  write_attr_str(f, "llamaft_version", LLAMAFT_VERSION);
  write_attr_str(f, "effective_config", id.effective_config);
  write_attr_str(f, "model_config", id.model_config_json);
  write_attr_str(f, "method", id.method);
  write_attr_str(f, "base_model_fingerprint", id.base_fingerprint);
  write_attr_str(f, "strategy", id.strategy);
  write_attr_str(f, "data_path", id.data_path);
  write_attr_i64(f, "data_seq_len", id.seq_len);
  write_attr_i64(f, "world_size", size);
  write_attr_i64(f, "global_batch_size", id.global_batch);
  write_attr_i64(f, "seed", id.seed);
  write_attr_i64(f, "shuffle", id.shuffle ? 1 : 0);
  // HDF5 1.10's MPI-IO driver issues no fsync on close: flush first.
  H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing ", path);
  double total = static_cast<double>(bytes);  // exact below 2^53 bytes
  comm_->all_reduce_sum(&total, 1);
  last_save_bytes_ = static_cast<uint64_t>(total);
}

// Rank 0, once every rank wrote and closed the file: fsync it and the
// manifest, rename the folder into place, replace `latest`, then drop the
// oldest checkpoints beyond keep_last.
void CheckpointManager::commit(const std::string& tmp_dir, const std::string& final_dir, const TrainState& state,
                               const RunIdentity& id) {
  const int size = comm_->size();
  const std::string path = tmp_dir + "/state.h5";
  fsync_path(path);
  {
    std::ofstream m(tmp_dir + "/manifest.json");
    m << "{\"format_version\": " << kCheckpointFormat << ", \"step\": " << state.step << ", \"world_size\": " << size
      << ", \"strategy\": \"" << id.strategy << "\", \"files\": [\"state.h5\"], \"bytes\": " << last_save_bytes_
      << "}\n";
  }
  fsync_path(tmp_dir + "/manifest.json");
  fsync_path(tmp_dir);
  std::error_code ec;
  fs::remove_all(final_dir, ec);  // a same-step folder from an earlier, interrupted run
  fs::rename(tmp_dir, final_dir, ec);
  LLAMAFT_REQUIRE(!ec, "cannot rename '", tmp_dir, "' to '", final_dir, "': ", ec.message());
  fsync_path(dir_);
  write_file_durably(dir_ + "/latest", step_name(state.step) + "\n");  // temp, fsync, rename, fsync dir_
  // Only after the commit: drop the oldest beyond keep_last.
  auto steps = committed_steps(dir_);
  for (size_t i = 0; i + keep_last_ < steps.size(); ++i) fs::remove_all(steps[i].second, ec);
}

std::string CheckpointManager::save(Fsdp& fsdp, Backend& be, const TrainState& state, const RunIdentity& id) {
  const auto t0 = std::chrono::steady_clock::now();
  const int rank = comm_->rank(), size = comm_->size();
  // Never save a state that holds non-finite values.
  double sq = 0;
  for (int u = 0; u < fsdp.num_units(); ++u)
    if (fsdp.trainable(u)) sq += be.sum_squares(fsdp.master(u), fsdp.geometry(u).shard_size);
  agree_or_throw(!std::isfinite(sq), str_cat("refusing to checkpoint step ", state.step,
                                             ": the weights hold NaN/inf values"), false);

  long long job = 0;
  if (rank == 0) {
    const char* slurm = std::getenv("SLURM_JOB_ID");
    job = slurm ? std::atoll(slurm) : static_cast<long long>(getpid());
  }
  comm_->broadcast(&job, sizeof(job), 0);
  const std::string final_dir = dir_ + "/" + step_name(state.step);
  const std::string tmp_dir = final_dir + ".tmp." + std::to_string(job);
  // A full disk must be found here, where the ranks can agree on it, not in
  // a collective HDF5 write: the rank whose write fails leaves the collective
  // while the others wait in it forever (seen at np = 2 on a full tmpfs).
  std::string space_error;
  if (rank == 0) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    fs::create_directories(tmp_dir, ec);
    if (ec) space_error = str_cat("cannot create checkpoint folder '", tmp_dir, "': ", ec.message());
    else space_error = space_shortfall(tmp_dir, checkpoint_bytes(fsdp), state.step);
    if (!space_error.empty()) fs::remove_all(tmp_dir, ec);
  }
  agree_or_throw(!space_error.empty(), space_error, true);
  const std::string path = tmp_dir + "/state.h5";
  const auto kill_step = fault::armed(fault::Point::kKillInSave);  // tests: SIGKILL mid-save
  const bool kill_me = kill_step && *kill_step == state.step && rank == size - 1;

  write_state_file(path, fsdp, be, state, id, kill_me);
  // Every rank closed the file without error (a throw above brings all down).
  comm_->barrier();
  if (rank == 0) commit(tmp_dir, final_dir, state, id);
  comm_->barrier();
  last_save_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return final_dir;
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
  H5Handle fapl = file_access(comm_->native());
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  agree_or_throw(fid < 0, str_cat("checkpoint '", path, "' cannot be opened: truncated or not an HDF5 file"), true);
  H5Handle file(fid, H5Fclose);
  const hid_t f = file.get();
  const std::string where = "checkpoint '" + ckpt_dir + "'";
  const int64_t format = read_attr_i64(f, "format_version", path);
  LLAMAFT_REQUIRE(format == kCheckpointFormat, where, " has format version ", format, "; this llamaft reads ",
                  kCheckpointFormat);
  auto must_match = [&](const char* what, const std::string& saved, const std::string& now) {
    if (saved != now)
      throw Error(str_cat(where, " was saved with a different ", what, ":\n  checkpoint: ", saved.substr(0, 400),
                          "\n  this run:   ", now.substr(0, 400), "\nuse checkpoint.resume = none or a matching config"));
  };
  must_match("model (config.json)", read_attr_str(f, "model_config", path), expect.model_config_json);
  must_match("finetune.method", read_attr_str(f, "method", path), expect.method);
  must_match("base model (fingerprint of config.json and safetensors headers)",
             read_attr_str(f, "base_model_fingerprint", path), expect.base_fingerprint);
  must_match("train.global_batch_size", std::to_string(read_attr_i64(f, "global_batch_size", path)),
             std::to_string(expect.global_batch));
  must_match("train.seed", std::to_string(read_attr_i64(f, "seed", path)), std::to_string(expect.seed));
  must_match("data.shuffle", std::to_string(read_attr_i64(f, "shuffle", path)), std::to_string(expect.shuffle ? 1 : 0));
  // The data position is a row index into this data: other data (or rows cut
  // to another length) continue from the same index only when asked to.
  const std::string saved_data = read_attr_str(f, "data_path", path);
  const std::string saved_seq =
      H5Aexists(f, "data_seq_len") > 0 ? std::to_string(read_attr_i64(f, "data_seq_len", path)) : "";
  const std::string now_seq = std::to_string(expect.seq_len);
  const bool data_differs = saved_data != expect.data_path || (!saved_seq.empty() && saved_seq != now_seq);
  if (data_differs && !expect.allow_data_change)
    throw Error(str_cat(where, " was trained on data.path = '", saved_data, "'",
                        saved_seq.empty() ? "" : ", data.seq_len = " + saved_seq, "; this run has '",
                        expect.data_path, "', ", now_seq,
                        ". Set checkpoint.allow_data_change = true to continue on other data from row ",
                        read_attr_i64(f, "global_batch_size", path), " x step, or checkpoint.resume = none"));
  if (data_differs && comm_->rank() == 0)
    std::cerr << "llamaft train: checkpoint.allow_data_change = true: resuming on data.path = '" << expect.data_path
              << "', data.seq_len = " << now_seq << " (the checkpoint was trained on '" << saved_data << "'"
              << (saved_seq.empty() ? "" : ", seq_len " + saved_seq) << ")\n";

  H5Handle dxpl = transfer(H5FD_MPIO_INDEPENDENT);
  const char* groups[3] = {"model", "optim/exp_avg", "optim/exp_avg_sq"};
  const auto& layout = fsdp.layout();
  std::string first_error;
  std::vector<float> host[3];
  for (int u = 0; u < layout.num_units(); ++u) {
    if (!fsdp.trainable(u)) continue;
    const ShardGeometry& g = fsdp.geometry(u);
    // Read into the shards themselves where they are host memory (their
    // padding is zero from allocation and never read from a file); otherwise
    // into zeroed host copies uploaded whole.
    float* targets[3] = {fsdp.master(u), fsdp.exp_avg(u), fsdp.exp_avg_sq(u)};
    float* into[3] = {targets[0], targets[1], targets[2]};
    for (int k = 0; k < 3 && !be.host_resident(); ++k) {
      host[k].assign(g.shard_size, 0.f);
      into[k] = host[k].data();
    }
    for (const auto& slot : layout.units()[u].tensors) {
      const int64_t lo = std::max(g.begin, slot.offset), hi = std::min(g.begin + g.shard_size, slot.offset + slot.numel());
      const int64_t elem = lo < hi ? lo - slot.offset : 0, count = lo < hi ? hi - lo : 0, dst = lo < hi ? lo - g.begin : 0;
      for (int k = 0; k < 3; ++k) {
        const std::string name = std::string(groups[k]) + "/" + slot.hf_name;
        H5Handle ds(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose);
        if (!ds.ok()) throw CheckpointError(str_cat(where, " has no dataset '/", name, "'"));
        H5Handle fspace(H5Dget_space(ds.get()), H5Sclose);
        std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(fspace.get()));
        H5Sget_simple_extent_dims(fspace.get(), dims.data(), nullptr);
        if (std::vector<int64_t>(dims.begin(), dims.end()) != slot.shape)
          throw Error(str_cat(where, ": dataset '/", name, "' has a different shape than this model needs"));
        hsize_t mcount = static_cast<hsize_t>(std::max<int64_t>(count, 1));
        H5Handle mspace(H5Screate_simple(1, &mcount, nullptr), H5Sclose);
        if (count == 0) H5Sselect_none(mspace.get());
        select_flat_range(fspace.get(), slot.shape, elem, count);
        const herr_t rc = H5Dread(ds.get(), H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), dxpl.get(), into[k] + dst);
        if (rc < 0 && first_error.empty())
          first_error = str_cat(where, ": dataset '/", name, "' failed its checksum or could not be read (corrupt file)");
      }
    }
    for (int k = 0; k < 3 && !be.host_resident(); ++k)
      be.to_device(targets[k], host[k].data(), g.shard_size * sizeof(float));
  }
  agree_or_throw(!first_error.empty(), first_error, true);
  TrainState st;
  H5Handle gs = checked(H5Gopen2(f, "state", H5P_DEFAULT), H5Gclose, str_cat(where, " has no /state group"));
  st.step = read_attr_i64(gs.get(), "step", path);
  st.consumed_rows = read_attr_i64(gs.get(), "consumed_rows", path);
  st.consumed_tokens = read_attr_i64(gs.get(), "consumed_tokens", path);
  st.skips_in_row = read_attr_i64(gs.get(), "skips_in_row", path);
  return st;
}

}  // namespace llamaft
