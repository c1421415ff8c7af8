#include "checkpoint/checkpoint.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <fstream>
#include <sstream>
#include <thread>

#include "comm/mpi_comm.hpp"
#include "comm/watchdog.hpp"
#include "core/crc32c.hpp"
#include "core/error.hpp"
#include "core/fault_points.hpp"
#include "core/parallel.hpp"
#include "core/util.hpp"
#include "io/hf_tensors.hpp"

namespace fs = std::filesystem;

namespace llamaft {

namespace {

using Clock = std::chrono::steady_clock;

// Writes go out in pieces of this size (a whole number of checksum blocks),
// each followed by a request to start its writeback, so the disk is busy
// while the next piece is checksummed.
constexpr uint64_t kWriteBytes = 16 * kChecksumBlockBytes;
const char* const kGroups[3] = {"model", "optim/exp_avg", "optim/exp_avg_sq"};

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

// Serial HDF5 (sec2): rank 0 alone creates a file, every rank may read one.
// Objects of 4 KiB and more start on a 4 KiB page.
H5Handle file_access() {
  H5Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate failed");
  H5_CHECK(H5Pset_fapl_sec2(fapl.get()), "cannot use the sec2 driver");
  H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "cannot set format bounds");
  H5_CHECK(H5Pset_alignment(fapl.get(), 4096, 4096), "cannot set the alignment");
  // Object headers in 1 MiB blocks, not between the datasets' data: a loader
  // opening every dataset reads a few blocks instead of seeking ~1000 times.
  H5_CHECK(H5Pset_meta_block_size(fapl.get(), 1 << 20), "cannot set the metadata block size");
  return fapl;
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

// One dataset of a checkpoint: group k (kGroups) of a trainable tensor.
struct DatasetSpec {
  int group = 0;
  std::string hf_name;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
  uint64_t blocks() const { return (bytes + kChecksumBlockBytes - 1) / kChecksumBlockBytes; }
  std::string name() const { return std::string(kGroups[group]) + "/" + hf_name; }
  std::string checksum_name() const { return "checksums/" + name(); }
};

// Every trainable tensor x kGroups, in an order every rank computes alike:
// unit u's slot i, group k is specs[first[u] + 3 i + k].
struct DatasetTable {
  std::vector<DatasetSpec> specs;
  std::vector<size_t> first;
};

DatasetTable dataset_table(const Fsdp& fsdp) {
  DatasetTable t;
  const auto& units = fsdp.layout().units();
  t.first.assign(units.size(), 0);
  for (size_t u = 0; u < units.size(); ++u) {
    t.first[u] = t.specs.size();
    if (!fsdp.trainable(static_cast<int>(u))) continue;  // LoRA: the frozen base is identified by its fingerprint
    for (const auto& slot : units[u].tensors) {
      LLAMAFT_CHECK(slot.shape.size() == 1 || slot.shape.size() == 2, "checkpoint supports 1-D and 2-D tensors");
      LLAMAFT_CHECK(slot.numel() > 0, "checkpoint: empty tensor ", slot.hf_name);
      for (int k = 0; k < 3; ++k)
        t.specs.push_back({k, slot.hf_name, slot.shape, static_cast<uint64_t>(slot.numel()) * sizeof(float)});
    }
  }
  return t;
}

// A slice of one dataset that this rank writes: bytes [at, at + bytes) of
// dataset `dataset`, from host memory at `src`.
struct WritePiece {
  uint32_t dataset = 0;
  uint64_t at = 0, bytes = 0;
  const char* src = nullptr;
};

// A writer's CRC-32C of bytes [start, start + len) of one checksum block.
struct BlockPart {
  uint32_t dataset, crc;
  uint64_t block, start, len;
};

// No NaN or infinity among the fp32 values at p (an exponent of all ones).
bool all_finite(const char* p, uint64_t bytes) {
  const uint32_t* v = reinterpret_cast<const uint32_t*>(p);
  uint32_t bad = 0;
  for (uint64_t i = 0; i < bytes / 4; ++i) bad |= static_cast<uint32_t>((v[i] & 0x7F800000u) == 0x7F800000u);
  return bad == 0;
}

std::string save_failure(int64_t step, const std::string& what, const std::string& path, const std::string& why) {
  return str_cat("checkpoint of step ", step, " (host ", process_host(), ", rank ", process_rank(), "): ", what, " '",
                 path, "': ", why, "; the save was abandoned and the previous checkpoint is intact");
}

// Reserves `size` bytes for the open file `fd` before any data is written,
// so a full disk fails here, where the ranks can still agree on it.
void reserve_space(int fd, const std::string& path, uint64_t size, int64_t step) {
  if (::fallocate(fd, 0, 0, static_cast<off_t>(size)) == 0) return;
  const int err = errno;
  struct statvfs st;
  const bool have_free = statvfs(path.c_str(), &st) == 0;
  const double free_mib = have_free ? static_cast<double>(st.f_bavail) * st.f_frsize / 1048576.0 : -1;
  if (err == EOPNOTSUPP || err == ENOSYS) {  // no fallocate here (some network filesystems): compare only
    if (!have_free || free_mib * 1048576.0 >= static_cast<double>(size)) return;
  } else if (err != ENOSPC) {
    throw CheckpointError(save_failure(step, "reserving space for", path, std::strerror(err)));
  }
  throw CheckpointError(save_failure(step, "reserving space for", path,
                                     str_cat(std::strerror(ENOSPC), ": it needs ", size / 1048576.0, " MiB and ",
                                             free_mib, " MiB are free")));
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

// One save between prepare() and its commit.
struct PendingSave {
  TrainState state;
  std::string strategy, tmp_dir, final_dir, path;
  std::vector<DatasetSpec> specs;
  std::vector<uint64_t> offsets;   // each dataset's data, then each checksum table, in the file
  std::vector<WritePiece> pieces;  // this rank's
  struct Copy {
    const float* from;
    float* to;
    size_t floats;
  };
  std::vector<Copy> copies;        // the snapshot, when the writer takes it
  std::atomic<bool> copied{false}; // the shards may change again
  Clock::time_point t0;
  bool async = false;
  double stall_s = 0;
  // Test seams (fault points).
  bool kill_me = false, enospc = false;
  int64_t delay_ms = 0;
  // kWriting: every rank's writer runs; kCommitting: rank 0 commits.
  enum Phase { kWriting, kCommitting } phase = kWriting;
  // The running phase's results; `done` is set last.
  std::string error;
  std::vector<BlockPart> parts;  // this rank's; once gathered, rank 0 holds every rank's
  uint64_t bytes = 0;            // written by this rank
  uint64_t total_bytes = 0;      // by every rank
  std::thread worker;
  std::atomic<bool> done{false};
};

namespace {

// Rank 0: the folder and the file with every dataset allocated but unwritten
// (its offsets into p.offsets), the attributes, and the space reserved.
void create_file(PendingSave& p, const RunIdentity& id, int world_size) {
  std::error_code ec;
  fs::remove_all(p.tmp_dir, ec);
  fs::create_directories(p.tmp_dir, ec);
  if (ec) throw CheckpointError(save_failure(p.state.step, "creating the folder", p.tmp_dir, ec.message()));
  const size_t n = p.specs.size();
  p.offsets.assign(2 * n, 0);
  {
    H5Handle fapl = file_access();
    H5Handle file = checked(H5Fcreate(p.path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), H5Fclose,
                            save_failure(p.state.step, "creating", p.path, "HDF5 could not create the file"));
    H5Handle lcpl = checked(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate failed");
    H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group failed");
    // Contiguous, allocated now, never filled: rank writes land at fixed offsets.
    H5Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate failed");
    H5_CHECK(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), "H5Pset_layout failed");
    H5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time failed");
    H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "H5Pset_fill_time failed");
    auto create = [&](const std::string& name, hid_t type, const std::vector<hsize_t>& dims) {
      H5Handle space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, "space");
      H5Handle ds = checked(H5Dcreate2(file.get(), name.c_str(), type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                            H5Dclose, str_cat("cannot create dataset ", name, " in ", p.path));
      const haddr_t at = H5Dget_offset(ds.get());
      if (at == HADDR_UNDEF) throw CheckpointError(str_cat("HDF5 gave no offset for dataset ", name, " in ", p.path));
      return static_cast<uint64_t>(at);
    };
    // The data in order, then every checksum table together (a loader
    // reads them all before any data).
    for (size_t i = 0; i < n; ++i) {
      const DatasetSpec& s = p.specs[i];
      p.offsets[i] = create(s.name(), H5T_IEEE_F32LE, std::vector<hsize_t>(s.shape.begin(), s.shape.end()));
    }
    for (size_t i = 0; i < n; ++i) p.offsets[n + i] = create(p.specs[i].checksum_name(), H5T_STD_U32LE, {p.specs[i].blocks()});
    H5Handle g_state = checked(H5Gcreate2(file.get(), "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
    const hid_t s = g_state.get();
    const TrainState& st = p.state;
    write_attr_i64(s, "step", st.step);
    write_attr_i64(s, "consumed_rows", st.consumed_rows);
    write_attr_i64(s, "consumed_tokens", st.consumed_tokens);
    write_attr_i64(s, "skips_in_row", st.skips_in_row);
    write_attr_i64(s, "lr_schedule_step", st.step);
    write_attr_i64(s, "data_position", st.consumed_rows);
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
    write_attr_str(f, "data_fingerprint", id.data_fingerprint);
    write_attr_i64(f, "lora_r", id.lora_r);
    write_attr_str(f, "lora_alpha", str_cat(id.lora_alpha));
    write_attr_i64(f, "lora_rslora", id.lora_rslora ? 1 : 0);
    write_attr_str(f, "lora_targets", id.lora_targets);
    write_attr_str(f, "base_quant", id.base_quant);
    write_attr_i64(f, "data_seq_len", id.seq_len);
    write_attr_i64(f, "world_size", world_size);
    write_attr_i64(f, "global_batch_size", id.global_batch);
    write_attr_i64(f, "seed", id.seed);
    write_attr_i64(f, "shuffle", id.shuffle ? 1 : 0);
    write_attr_str(f, "checksum", "crc32c");
    write_attr_i64(f, "checksum_block_bytes", static_cast<int64_t>(kChecksumBlockBytes));
  }  // closed: the file has its full size (HDF5 sets it to the end of its allocations)
  const int fd = ::open(p.path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(save_failure(p.state.step, "opening", p.path, std::strerror(errno)));
  struct stat sb;
  const int st_rc = fstat(fd, &sb);
  try {
    if (st_rc != 0) throw CheckpointError(save_failure(p.state.step, "sizing", p.path, std::strerror(errno)));
    reserve_space(fd, p.path, static_cast<uint64_t>(sb.st_size), p.state.step);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

// The writer: this rank's pieces, each block's CRC-32C, then fdatasync. No
// MPI and no HDF5, so it may run on a thread of its own.
void write_pieces(PendingSave& p, int threads) {
  for (const auto& c : p.copies) std::memcpy(c.to, c.from, c.floats * sizeof(float));
  p.copied.store(true, std::memory_order_release);
  // Chunks of up to 16 blocks, ending on a block boundary (or their piece's end).
  struct Chunk {
    uint32_t piece;
    uint64_t at, next;
  };
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < p.pieces.size(); ++i)
    for (uint64_t at = p.pieces[i].at, end = at + p.pieces[i].bytes; at < end;) {
      const uint64_t next = std::min(end, at / kChecksumBlockBytes * kChecksumBlockBytes + kWriteBytes);
      chunks.push_back({static_cast<uint32_t>(i), at, next});
      at = next;
    }
  std::atomic<int> err{0};
  std::atomic<bool> nonfinite{false};
  std::atomic<uint64_t> bytes{0};
  std::atomic<int64_t> chunks_done{0};
  const char* what = "writing";
  const int fd = ::open(p.path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    what = "opening";
  }
  std::vector<std::vector<BlockPart>> parts(static_cast<size_t>(std::max(1, threads)));
  // Each thread checks, checksums and writes whole chunks: the checksum pass
  // leaves the chunk in cache for pwrite's copy.
#pragma omp parallel num_threads(std::max(1, threads)) if (threads > 1 && fd >= 0)
  {
    std::vector<BlockPart>& mine = parts[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < static_cast<int64_t>(chunks.size()); ++c) {
      if (fd < 0 || err.load(std::memory_order_relaxed) || nonfinite.load(std::memory_order_relaxed)) continue;
      const Chunk& ch = chunks[static_cast<size_t>(c)];
      const WritePiece& w = p.pieces[ch.piece];
      const char* src = w.src + (ch.at - w.at);
      // Never save non-finite weights (the writer reads every byte anyway).
      if (p.specs[w.dataset].group == 0 && !all_finite(src, ch.next - ch.at)) {
        nonfinite = true;
        continue;
      }
      for (uint64_t a = ch.at; a < ch.next;) {
        const uint64_t block = a / kChecksumBlockBytes, b = std::min(ch.next, (block + 1) * kChecksumBlockBytes);
        mine.push_back({w.dataset, crc32c(src + (a - ch.at), b - a), block, a - block * kChecksumBlockBytes, b - a});
        a = b;
      }
      const uint64_t base = p.offsets[w.dataset];
      if (const int e = pwrite_full(fd, src, ch.next - ch.at, base + ch.at)) {
        err = e < 0 ? EIO : e;
        continue;
      }
      ::sync_file_range(fd, static_cast<off_t>(base + ch.at), static_cast<off_t>(ch.next - ch.at),
                        SYNC_FILE_RANGE_WRITE);
      bytes += ch.next - ch.at;
      // Test seams: a SIGKILL or an ENOSPC part-way, a slow disk.
      const int64_t done = ++chunks_done;
      if (p.kill_me && done == 3) raise(SIGKILL);
      if (p.enospc && done == 1) err = ENOSPC;
      if (p.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(p.delay_ms));
    }
  }
  int e = err.load();
  if (fd >= 0 && !e && !nonfinite && ::fdatasync(fd) != 0) {
    e = errno;
    what = "syncing";
  }
  if (fd >= 0 && ::close(fd) != 0 && !e) {
    e = errno;
    what = "closing";
  }
  p.bytes = bytes.load();
  for (auto& v : parts) p.parts.insert(p.parts.end(), v.begin(), v.end());
  if (nonfinite)
    p.error = str_cat("refusing to checkpoint step ", p.state.step, " (host ", process_host(), ", rank ",
                      process_rank(), "): the weights hold NaN/inf values; the previous checkpoint is intact");
  else if (e)
    p.error = save_failure(p.state.step, what, p.path, std::strerror(e));
  p.done.store(true, std::memory_order_release);
}

// Rank 0: joins every writer's block parts into one CRC-32C per block,
// checks that every block was covered exactly once, and writes the tables.
void write_checksums(const PendingSave& p, std::vector<BlockPart>& parts) {
  std::sort(parts.begin(), parts.end(), [](const BlockPart& a, const BlockPart& b) {
    return std::tie(a.dataset, a.block, a.start) < std::tie(b.dataset, b.block, b.start);
  });
  const size_t n = p.specs.size();
  std::vector<std::vector<uint32_t>> tables(n);
  for (size_t d = 0; d < n; ++d) tables[d].assign(p.specs[d].blocks(), 0);
  size_t blocks_done = 0, blocks_all = 0;
  for (size_t d = 0; d < n; ++d) blocks_all += tables[d].size();
  for (size_t i = 0; i < parts.size();) {
    const BlockPart& first = parts[i];
    LLAMAFT_CHECK(first.dataset < n && first.block < tables[first.dataset].size() && first.start == 0,
                  "checkpoint: block ", first.block, " of ", p.specs[first.dataset].name(), " does not start at 0");
    uint32_t crc = first.crc;
    uint64_t covered = first.len;
    size_t j = i + 1;
    for (; j < parts.size() && parts[j].dataset == first.dataset && parts[j].block == first.block; ++j) {
      LLAMAFT_CHECK(parts[j].start == covered, "checkpoint: block ", first.block, " of ",
                    p.specs[first.dataset].name(), " has a gap or an overlap at byte ", parts[j].start);
      crc = crc32c_combine(crc, parts[j].crc, parts[j].len);
      covered += parts[j].len;
    }
    const DatasetSpec& s = p.specs[first.dataset];
    LLAMAFT_CHECK(covered == std::min(kChecksumBlockBytes, s.bytes - first.block * kChecksumBlockBytes),
                  "checkpoint: block ", first.block, " of ", s.name(), " is not covered whole");
    tables[first.dataset][first.block] = crc;
    ++blocks_done;
    i = j;
  }
  LLAMAFT_CHECK(blocks_done == blocks_all, "checkpoint: ", blocks_all - blocks_done, " blocks were written by no rank");
  const int fd = ::open(p.path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(save_failure(p.state.step, "opening", p.path, std::strerror(errno)));
  int err = 0;
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the checksum tables are written as little-endian uint32");
  for (size_t d = 0; d < n && !err; ++d)
    if (const int e = pwrite_full(fd, tables[d].data(), tables[d].size() * sizeof(uint32_t), p.offsets[n + d]))
      err = e < 0 ? EIO : e;
  if (!err && ::fdatasync(fd) != 0) err = errno;
  ::close(fd);
  if (err) throw CheckpointError(save_failure(p.state.step, "writing the checksums of", p.path, std::strerror(err)));
}

// Reads bytes [at, at + n) of a dataset of `size` bytes stored at `base`
// into dst, verifying the CRC-32C of every block the range touches (whole
// blocks straight into dst, a partial one through `scratch`); "" or what
// failed.
std::string read_verified(int fd, uint64_t base, uint64_t size, const std::vector<uint32_t>& crcs, uint64_t at,
                          uint64_t n, char* dst, std::vector<char>& scratch) {
  constexpr uint64_t B = kChecksumBlockBytes;
  const uint64_t end = at + n;
  auto io_error = [](int rc) { return rc < 0 ? std::string("the file is truncated") : std::string(std::strerror(rc)); };
  for (uint64_t a = at; a < end;) {
    const uint64_t block = a / B, lo = block * B, hi = std::min(lo + B, size);
    if (a == lo && hi <= end) {
      uint64_t run_end = a, j = block;
      while (j < block + kWriteBytes / B) {
        const uint64_t h = std::min((j + 1) * B, size);
        if (h > end) break;
        run_end = h;
        ++j;
        if (h == size) break;
      }
      // Each thread reads whole blocks and checksums them while they are in cache.
      std::atomic<int64_t> bad{-1};
      std::atomic<int> rc_first{0};
      const int64_t count = static_cast<int64_t>(j - block);
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t k = 0; k < count; ++k) {
        const uint64_t b0 = (block + k) * B, b1 = std::min(b0 + B, size);
        if (const int rc = pread_full(fd, dst + (b0 - at), b1 - b0, base + b0)) {
          rc_first = rc;
          continue;
        }
        if (crc32c(dst + (b0 - at), b1 - b0) != crcs[block + k]) bad = static_cast<int64_t>(block + k);
      }
      if (rc_first) return io_error(rc_first);
      if (bad >= 0) return str_cat("block ", bad.load(), " failed its CRC-32C checksum (corrupt file)");
      a = run_end;
    } else {
      scratch.resize(B);
      if (const int rc = pread_full(fd, scratch.data(), hi - lo, base + lo)) return io_error(rc);
      if (crc32c(scratch.data(), hi - lo) != crcs[block])
        return str_cat("block ", block, " failed its CRC-32C checksum (corrupt file)");
      const uint64_t from = std::max(a, lo), to = std::min(end, hi);
      std::memcpy(dst + (from - at), scratch.data() + (from - lo), to - from);
      a = to;
    }
  }
  return "";
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

namespace {
// What changes LoRA's math on resume: r (the shapes) is never allowed to
// differ; targets, alpha, rslora and the base's quantization only with
// checkpoint.allow_lora_change (narrowed targets then drop the removed
// modules' adapters, said once). Checkpoints from before these attributes
// carry none and are not compared.
void check_lora_identity(hid_t f, const std::string& path, const std::string& where, const RunIdentity& expect,
                         bool lead) {
  if (H5Aexists(f, "lora_r") <= 0 || expect.method == "full") return;
  struct Field {
    const char* key;
    std::string saved, now;
  };
  const std::vector<Field> fields = {
      {"lora.r", std::to_string(read_attr_i64(f, "lora_r", path)), std::to_string(expect.lora_r)},
      {"lora.targets", read_attr_str(f, "lora_targets", path), expect.lora_targets},
      {"lora.alpha", read_attr_str(f, "lora_alpha", path), str_cat(expect.lora_alpha)},
      {"lora.rslora", read_attr_i64(f, "lora_rslora", path) ? "true" : "false", expect.lora_rslora ? "true" : "false"},
      {"quant.base", read_attr_str(f, "base_quant", path), expect.base_quant},
  };
  std::string changes;
  bool r_changed = false, widened = false;
  for (const Field& x : fields) {
    if (x.saved == x.now) continue;
    changes += str_cat("\n  ", x.key, ": checkpoint ", x.saved.empty() ? "(none)" : x.saved, ", this run ",
                       x.now.empty() ? "(none)" : x.now);
    if (std::string(x.key) == "lora.r") r_changed = true;
    if (std::string(x.key) == "lora.targets") {
      std::stringstream ss(x.now);
      for (std::string t; std::getline(ss, t, ',');)
        if (("," + x.saved + ",").find("," + t + ",") == std::string::npos) widened = true;
    }
  }
  if (changes.empty()) return;
  if (r_changed || widened)
    throw Error(str_cat(where, " cannot resume with other LoRA shapes:", changes,
                        "\nthe checkpoint has no adapters for them; start a new run (checkpoint.resume = none, "
                        "lora.init_from = the exported adapter folder) or restore the old settings"));
  if (!expect.allow_lora_change)
    throw Error(str_cat(where, " was trained with other LoRA settings, which change the model's math:", changes,
                        "\nrestore them, or set checkpoint.allow_lora_change = true to continue with the new ones "
                        "(narrowed targets drop the removed modules' trained adapters)"));
  if (lead)
    std::cerr << "llamaft train: checkpoint.allow_lora_change = true: resuming with changed LoRA settings:" << changes
              << "\n";
}
}  // namespace

std::string data_fingerprint(const std::string& data_path) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(data_path, ec)) {
    for (const char* f : {"manifest.json", "index.bin", "tokens.bin", "labels.bin", "docs.bin"}) files.push_back(f);
  } else {
    files.push_back("");
  }
  for (const auto& f : files) {
    const std::string path = f.empty() ? data_path : data_path + "/" + f;
    std::ifstream in(path, std::ios::binary);
    if (!in) continue;
    mix(f.data(), f.size());
    const uint64_t size = fs::file_size(path, ec);
    mix(&size, sizeof(size));
    // Small files whole; larger ones by 64 evenly spaced 4 KiB blocks and the last one.
    std::string block(4096, '\0');
    const uint64_t blocks = (size + 4095) / 4096;
    const uint64_t samples = std::min<uint64_t>(blocks, 64);
    for (uint64_t k = 0; k <= samples; ++k) {
      const uint64_t b = k == samples ? (blocks ? blocks - 1 : 0) : (blocks <= 64 ? k : blocks * k / samples);
      if (k == samples && (blocks <= 64 || blocks == 0)) break;
      in.clear();
      in.seekg(static_cast<std::streamoff>(b * 4096));
      in.read(block.data(), 4096);
      mix(block.data(), static_cast<size_t>(in.gcount()));
    }
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

CheckpointManager::CheckpointManager(const MpiCommunicator& comm, std::string dir, int keep_last)
    : comm_(comm.duplicate()), dir_(std::move(dir)), keep_last_(keep_last) {
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

// Collective: every rank writes its slices of the weights and both moments
// into `path`, plus the state and identity attributes; the file is flushed
// (HDF5 1.10's MPI-IO driver does not fsync on close) and closed.
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
  p->path = p->tmp_dir + "/state.h5";
  DatasetTable table = dataset_table(fsdp);
  p->specs = std::move(table.specs);

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
          p->pieces.push_back({static_cast<uint32_t>(i + k), static_cast<uint64_t>(elem) * sizeof(float),
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
      p->pieces[i].src = reinterpret_cast<const char*>(to);
      for (size_t off = 0; off < sources[i].floats; off += kWriteBytes / 2 / sizeof(float))
        p->copies.push_back({sources[i].shard + off, to + off,
                             std::min(kWriteBytes / 2 / sizeof(float), sources[i].floats - off)});
      cursor += sources[i].floats;
    }
    if (!be.host_resident()) {
      for (const auto& c : p->copies) be.to_host(c.to, c.from, c.floats * sizeof(float));
      p->copies.clear();
    } else if (!defer_copies) {
      parallel_for_each<int>(static_cast<int64_t>(p->copies.size()), true, [&](int&, int64_t i) {
        std::memcpy(p->copies[i].to, p->copies[i].from, p->copies[i].floats * sizeof(float));
      });
      p->copies.clear();
    }
  }
  p->copied.store(p->copies.empty(), std::memory_order_release);

  std::string error;
  if (rank == 0) {
    try {
      create_file(*p, id, size);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_or_abandon(!error.empty(), error, p->tmp_dir);
  p->offsets.resize(2 * p->specs.size());
  comm_->broadcast(p->offsets.data(), p->offsets.size() * sizeof(uint64_t), 0);
  const auto kill_step = fault::armed(fault::Point::kKillInSave);  // tests: SIGKILL mid-save
  p->kill_me = kill_step && *kill_step == state.step && rank == size - 1;
  const auto enospc_step = fault::armed(fault::Point::kSaveEnospc);
  p->enospc = enospc_step && *enospc_step == state.step && rank == size - 1;
  p->delay_ms = fault::armed(fault::Point::kSavePieceDelay).value_or(0);
  return p;
}

// Rank 0, once every rank's data is durable: fsync the file (its size and
// the checksums) and the manifest, rename the folder into place, replace
// `latest`, then drop the oldest checkpoints beyond keep_last.
void CheckpointManager::commit(const PendingSave& p) {
  fsync_path(p.path);
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
  std::error_code ec;
  // A same-step folder (a re-run of a finished job, or a resume from an older
  // step) is never removed before the new one is in place: the two are
  // swapped atomically (renameat2 RENAME_EXCHANGE) and the old copy, now
  // under the tmp name, is dropped after `latest` is written. Where the
  // filesystem cannot exchange (NFS, some Lustre versions), the old folder
  // is first renamed to step_N.replaced.<job>, which remove_stale() puts back
  // if the job dies before the new one is in place.
  std::string old_copy;
  if (fs::exists(p.final_dir, ec)) {
    const bool fault_rename = fault::armed(fault::Point::kCommitRenameFail) == p.state.step;
    const bool fault_kill = fault::armed(fault::Point::kKillInCommit) == p.state.step;
    if (!fault_rename && !fault_kill &&
        ::renameat2(AT_FDCWD, p.tmp_dir.c_str(), AT_FDCWD, p.final_dir.c_str(), RENAME_EXCHANGE) == 0) {
      old_copy = p.tmp_dir;
    } else {
      old_copy = p.final_dir + ".replaced" + p.tmp_dir.substr(p.final_dir.size() + 4);  // step_N.replaced.<job>
      fs::rename(p.final_dir, old_copy, ec);
      if (ec)
        throw CheckpointError(save_failure(p.state.step, "moving the earlier copy aside", p.final_dir, ec.message()));
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
    }
  } else {
    fs::rename(p.tmp_dir, p.final_dir, ec);
    if (ec) throw CheckpointError(save_failure(p.state.step, "renaming into place", p.tmp_dir, ec.message()));
  }
  fsync_path(dir_);
  write_file_durably(dir_ + "/latest", step_name(p.state.step) + "\n");  // temp, fsync, rename, fsync dir_
  if (!old_copy.empty()) fs::remove_all(old_copy, ec);
  // Only after the commit: drop the oldest beyond keep_last.
  auto steps = committed_steps(dir_);
  for (size_t i = 0; i + keep_last_ < steps.size(); ++i) fs::remove_all(steps[i].second, ec);
}

void CheckpointManager::finish_writes(PendingSave& p) {
  if (p.worker.joinable()) p.worker.join();
  agree_or_abandon(!p.error.empty(), p.error, p.tmp_dir);
  // Rank 0 gathers every writer's block checksums.
  const int rank = comm_->rank(), size = comm_->size();
  const MPI_Comm native = comm_->native();
  int mine = static_cast<int>(p.parts.size() * sizeof(BlockPart));
  LLAMAFT_CHECK(p.parts.size() * sizeof(BlockPart) < (1u << 31), "checkpoint: too many checksum blocks on one rank");
  std::vector<int> counts(rank == 0 ? size : 0), displs(rank == 0 ? size : 0);
  WatchdogScope watch("gather of checkpoint checksums", &comm_->members());
  LLAMAFT_CHECK(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, native) == MPI_SUCCESS, "MPI_Gather");
  std::vector<BlockPart> all;
  if (rank == 0) {
    size_t total = 0;
    for (int r = 0; r < size; ++r) displs[r] = static_cast<int>(total), total += static_cast<size_t>(counts[r]);
    LLAMAFT_CHECK(total < (1u << 31), "checkpoint: too many checksum blocks");
    all.resize(total / sizeof(BlockPart));
  }
  LLAMAFT_CHECK(MPI_Gatherv(p.parts.data(), mine, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, 0,
                            native) == MPI_SUCCESS, "MPI_Gatherv");
  p.parts = std::move(all);  // rank 0: every rank's; the others: none
  double bytes = static_cast<double>(p.bytes);  // exact below 2^53 bytes
  comm_->all_reduce_sum(&bytes, 1);
  p.total_bytes = static_cast<uint64_t>(bytes);
  p.error.clear();
  p.phase = PendingSave::kCommitting;
  p.done.store(rank != 0, std::memory_order_release);
}

void CheckpointManager::commit_on_rank0(PendingSave& p) {
  try {
    write_checksums(p, p.parts);
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
  write_pieces(*p, omp_get_max_threads());  // training waits: every thread writes
  finish_writes(*p);
  if (comm_->rank() == 0) commit_on_rank0(*p);
  finish_commit(*p);
  return last_.path;
}

void CheckpointManager::before_update() {
  if (!pending_ || pending_->copied.load(std::memory_order_acquire)) return;
  const auto t = Clock::now();
  while (!pending_->copied.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(200));
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
  pending_->worker = std::thread([p] { write_pieces(*p, 1); });  // beside training: one thread
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
  const hid_t f = file.get();
  const std::string where = "checkpoint '" + ckpt_dir + "'";
  const int64_t format = read_attr_i64(f, "format_version", path);
  LLAMAFT_REQUIRE(format == 1 || format == kCheckpointFormat, where, " has format version ", format,
                  "; this llamaft reads 1 and ", kCheckpointFormat);
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
  check_lora_identity(f, path, where, expect, comm_->rank() == 0);
  // The data position is a row index into this data: other data (or rows cut
  // to another length) continue from the same index only when asked to. The
  // data is compared by content (older checkpoints: by path).
  const std::string saved_data = read_attr_str(f, "data_path", path);
  const bool by_content = H5Aexists(f, "data_fingerprint") > 0;
  const std::string saved_print = by_content ? read_attr_str(f, "data_fingerprint", path) : "";
  const std::string saved_seq =
      H5Aexists(f, "data_seq_len") > 0 ? std::to_string(read_attr_i64(f, "data_seq_len", path)) : "";
  const std::string now_seq = std::to_string(expect.seq_len);
  const bool data_differs = (by_content ? saved_print != expect.data_fingerprint : saved_data != expect.data_path) ||
                            (!saved_seq.empty() && saved_seq != now_seq);
  if (data_differs && !expect.allow_data_change)
    throw Error(str_cat(where, " was trained on other data: data.path = '", saved_data, "'",
                        by_content ? " (content " + saved_print + ")" : "",
                        saved_seq.empty() ? "" : ", data.seq_len = " + saved_seq, "; this run has '",
                        expect.data_path, "'", by_content ? " (content " + expect.data_fingerprint + ")" : "",
                        ", ", now_seq,
                        ". Set checkpoint.allow_data_change = true to continue on other data from row ",
                        read_attr_i64(f, "global_batch_size", path), " x step, or checkpoint.resume = none"));
  if (data_differs && comm_->rank() == 0)
    std::cerr << "llamaft train: checkpoint.allow_data_change = true: resuming on data.path = '" << expect.data_path
              << "', data.seq_len = " << now_seq << " (the checkpoint was trained on '" << saved_data << "'"
              << (saved_seq.empty() ? "" : ", seq_len " + saved_seq) << ")\n";

  const bool v2 = format == 2;
  uint64_t block_bytes = kChecksumBlockBytes;
  if (v2) {
    const std::string algo = read_attr_str(f, "checksum", path);
    block_bytes = static_cast<uint64_t>(read_attr_i64(f, "checksum_block_bytes", path));
    LLAMAFT_REQUIRE(algo == "crc32c" && block_bytes == kChecksumBlockBytes, where, " has checksums '", algo,
                    "' over ", block_bytes, "-byte blocks; this llamaft reads crc32c over ", kChecksumBlockBytes);
  }
  int fd = -1;
  if (v2) {
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
  const auto& layout = fsdp.layout();
  std::string first_error;
  // Where they are host memory, read into the shards themselves (their
  // padding is zero from allocation and never read from a file); otherwise
  // into zeroed host copies uploaded whole.
  struct Target {
    int unit;
    float* into[3];
  };
  std::vector<Target> targets;
  std::vector<std::vector<float>> host;
  for (int u = 0; u < layout.num_units(); ++u) {
    if (!fsdp.trainable(u)) continue;
    Target t{u, {fsdp.master(u), fsdp.exp_avg(u), fsdp.exp_avg_sq(u)}};
    for (int k = 0; k < 3 && !be.host_resident(); ++k) {
      host.emplace_back(fsdp.geometry(u).shard_size, 0.f);
      t.into[k] = host.back().data();
    }
    targets.push_back(t);
  }
  // Pass 1, metadata: every dataset's shape, offset and checksums.
  struct Read {
    std::string name;
    uint64_t base, bytes, at, n;
    std::vector<uint32_t> crcs;
    char* dst;
  };
  std::vector<Read> reads;
  for (const Target& t : targets) {
    const ShardGeometry& g = fsdp.geometry(t.unit);
    for (const auto& slot : layout.units()[t.unit].tensors) {
      const int64_t lo = std::max(g.begin, slot.offset), hi = std::min(g.begin + g.shard_size, slot.offset + slot.numel());
      const int64_t elem = lo < hi ? lo - slot.offset : 0, count = lo < hi ? hi - lo : 0, dst = lo < hi ? lo - g.begin : 0;
      for (int k = 0; k < 3; ++k) {
        const std::string name = std::string(kGroups[k]) + "/" + slot.hf_name;
        H5Handle ds(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose);
        if (!ds.ok()) throw CheckpointError(str_cat(where, " has no dataset '/", name, "'"));
        H5Handle fspace(H5Dget_space(ds.get()), H5Sclose);
        std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(fspace.get()));
        H5Sget_simple_extent_dims(fspace.get(), dims.data(), nullptr);
        if (std::vector<int64_t>(dims.begin(), dims.end()) != slot.shape)
          throw Error(str_cat(where, ": dataset '/", name, "' has a different shape than this model needs"));
        if (count == 0 || !first_error.empty()) continue;
        if (!v2) {  // format 1: chunked, Fletcher-32 checked by HDF5
          hsize_t mcount = static_cast<hsize_t>(count);
          H5Handle mspace(H5Screate_simple(1, &mcount, nullptr), H5Sclose);
          select_flat_range(fspace.get(), slot.shape, elem, count);
          if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), H5P_DEFAULT, t.into[k] + dst) < 0)
            first_error = str_cat(where, ": dataset '/", name, "' failed its checksum or could not be read (corrupt file)");
          continue;
        }
        Read r{name, 0, static_cast<uint64_t>(slot.numel()) * sizeof(float),
               static_cast<uint64_t>(elem) * sizeof(float), static_cast<uint64_t>(count) * sizeof(float), {},
               reinterpret_cast<char*>(t.into[k] + dst)};
        r.crcs.resize((r.bytes + kChecksumBlockBytes - 1) / kChecksumBlockBytes);
        const haddr_t base = H5Dget_offset(ds.get());
        H5Handle cds(H5Dopen2(f, ("checksums/" + name).c_str(), H5P_DEFAULT), H5Dclose);
        hssize_t stored = -1;
        if (cds.ok()) {
          H5Handle cspace(H5Dget_space(cds.get()), H5Sclose);
          stored = H5Sget_simple_extent_npoints(cspace.get());
        }
        if (base == HADDR_UNDEF || stored != static_cast<hssize_t>(r.crcs.size()) ||
            H5Dread(cds.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, r.crcs.data()) < 0) {
          first_error = str_cat(where, ": dataset '/", name, "' has no stored data or no checksum table (corrupt file)");
          continue;
        }
        r.base = static_cast<uint64_t>(base);
        reads.push_back(std::move(r));
      }
    }
  }
  // Pass 2, data: a helper thread asks the kernel for what comes next, at
  // most 256 MiB ahead of the reader (checked every 4 MiB), which reads and
  // verifies block by block.
  std::atomic<uint64_t> consumed{0};
  std::atomic<bool> stop{false};
  std::thread ahead;
  if (!reads.empty() && first_error.empty()) {
    ahead = std::thread([&] {
      constexpr uint64_t kPiece = 4u << 20, kAhead = 256u << 20;
      uint64_t issued = 0;
      for (const Read& r : reads) {
        const uint64_t lo = r.at / kChecksumBlockBytes * kChecksumBlockBytes;
        const uint64_t hi = std::min(r.bytes, (r.at + r.n + kChecksumBlockBytes - 1) / kChecksumBlockBytes * kChecksumBlockBytes);
        for (uint64_t off = lo; off < hi && !stop; off += kPiece) {
          while (!stop && issued > consumed.load(std::memory_order_relaxed) + kAhead)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          const uint64_t len = std::min(kPiece, hi - off);
          advise_willneed(fd, r.base + off, len);
          issued += len;
        }
      }
    });
  }
  std::vector<char> scratch;
  for (const Read& r : reads) {
    if (!first_error.empty()) break;
    const std::string why = read_verified(fd, r.base, r.bytes, r.crcs, r.at, r.n, r.dst, scratch);
    if (!why.empty()) first_error = str_cat(where, ": dataset '/", r.name, "': ", why);
    consumed += r.n;
  }
  stop = true;
  if (ahead.joinable()) ahead.join();
  if (!be.host_resident()) {
    size_t h = 0;
    for (const Target& t : targets)
      for (int k = 0; k < 3; ++k)
        be.to_device(k == 0 ? fsdp.master(t.unit) : k == 1 ? fsdp.exp_avg(t.unit) : fsdp.exp_avg_sq(t.unit),
                     host[h++].data(), fsdp.geometry(t.unit).shard_size * sizeof(float));
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
