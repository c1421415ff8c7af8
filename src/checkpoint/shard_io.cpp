// Shard I/O of format 2 (shard_io.hpp): the writer, the checksum tables and
// the verified reads.
#include "checkpoint/shard_io.hpp"

#include <fcntl.h>
#include <omp.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>
#include <tuple>

#include "core/crc32c.hpp"
#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {

// No NaN or infinity among the fp32 values at p (an exponent of all ones).
bool all_finite(const char* p, uint64_t bytes) {
  const uint32_t* v = reinterpret_cast<const uint32_t*>(p);
  uint32_t bad = 0;
  for (uint64_t i = 0; i < bytes / 4; ++i) bad |= static_cast<uint32_t>((v[i] & 0x7F800000u) == 0x7F800000u);
  return bad == 0;
}

// Reserves `size` bytes for the open file `fd`.
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

// A writer's unit of work: bytes [at, next) of piece `piece`, up to 16
// blocks, ending on a block boundary (or its piece's end).
struct Chunk {
  uint32_t piece;
  uint64_t at, next;
};

std::vector<Chunk> chunks_of(const std::vector<WritePiece>& pieces) {
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < pieces.size(); ++i)
    for (uint64_t at = pieces[i].at, end = at + pieces[i].bytes; at < end;) {
      const uint64_t next = std::min(end, at / kChecksumBlockBytes * kChecksumBlockBytes + kWriteBytes);
      chunks.push_back({static_cast<uint32_t>(i), at, next});
      at = next;
    }
  return chunks;
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

// A format 2 slice to read: bytes [at, at + n) of dataset `name` (`bytes`
// long, stored at `base`) into dst.
struct Read {
  std::string name;
  uint64_t base, bytes, at, n;
  std::vector<uint32_t> crcs;
  char* dst;
};

// Where a trainable unit's weights and moments are read into.
struct Target {
  int unit;
  float* into[3];
};

// Pass 1, metadata: every dataset's shape (all of them, on every rank, so
// that a mismatch is refused alike), then this rank's slices: read at once
// through HDF5 (format 1), or located with their checksums (format 2).
std::vector<Read> plan_reads(hid_t f, int64_t format, const Fsdp& fsdp, const std::vector<Target>& targets,
                             const std::string& where, std::string& first_error) {
  const DatasetTable table = dataset_table(fsdp);
  std::vector<H5Handle> datasets(table.specs.size());
  for (const Target& t : targets)
    for (size_t i = table.first[t.unit], e = i + 3 * fsdp.layout().units()[t.unit].tensors.size(); i < e; ++i)
      datasets[i] = open_dataset(f, table.specs[i].name(), table.specs[i].shape, where);
  std::vector<Read> reads;
  for (const Target& t : targets) {
    const Unit& unit = fsdp.layout().units()[t.unit];
    for_each_piece(unit, fsdp.geometry(t.unit), [&](const TensorSlot& slot, int64_t elem, int64_t count, int64_t dst) {
      const size_t first = table.first[t.unit] + 3 * static_cast<size_t>(&slot - unit.tensors.data());
      for (int k = 0; k < 3 && first_error.empty(); ++k) {
        const DatasetSpec& s = table.specs[first + k];
        const hid_t ds = datasets[first + k].get();
        if (format == 1) {  // chunked, Fletcher-32 checked by HDF5
          if (!read_flat_range(ds, s.shape, elem, count, t.into[k] + dst))
            first_error = str_cat(where, ": dataset '/", s.name(), "' failed its checksum or could not be read (corrupt file)");
          continue;
        }
        Read r{s.name(), 0, s.bytes, static_cast<uint64_t>(elem) * sizeof(float),
               static_cast<uint64_t>(count) * sizeof(float), {}, reinterpret_cast<char*>(t.into[k] + dst)};
        if (!locate_data(f, ds, s.name(), s.blocks(), &r.base, &r.crcs)) {
          first_error = str_cat(where, ": dataset '/", s.name(), "' has no stored data or no checksum table (corrupt file)");
          continue;
        }
        reads.push_back(std::move(r));
      }
    });
  }
  return reads;
}

// Pass 2, data: a helper thread asks the kernel for what comes next, at
// most 256 MiB ahead of the reader (checked every 4 MiB), which reads and
// verifies block by block. "" or the first failure.
std::string read_all(int fd, const std::vector<Read>& reads, const std::string& where) {
  std::atomic<uint64_t> consumed{0};
  std::atomic<bool> stop{false};
  std::thread ahead;
  if (!reads.empty()) {
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
  std::string error;
  std::vector<char> scratch;
  for (const Read& r : reads) {
    const std::string why = read_verified(fd, r.base, r.bytes, r.crcs, r.at, r.n, r.dst, scratch);
    if (!why.empty()) {
      error = str_cat(where, ": dataset '/", r.name, "': ", why);
      break;
    }
    consumed += r.n;
  }
  stop = true;
  if (ahead.joinable()) ahead.join();
  return error;
}

}  // namespace

void reserve_file_space(const std::string& path, int64_t step) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(save_failure(step, "opening", path, std::strerror(errno)));
  struct stat sb;
  const int st_rc = fstat(fd, &sb);
  try {
    if (st_rc != 0) throw CheckpointError(save_failure(step, "sizing", path, std::strerror(errno)));
    reserve_space(fd, path, static_cast<uint64_t>(sb.st_size), step);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void write_shards(ShardWrite& w, int threads) {
  for (const auto& c : w.copies) std::memcpy(c.to, c.from, c.floats * sizeof(float));
  w.copied.store(true, std::memory_order_release);
  const std::vector<Chunk> chunks = chunks_of(w.pieces);
  std::atomic<int> err{0};
  std::atomic<bool> nonfinite{false};
  std::atomic<uint64_t> bytes{0};
  std::atomic<int64_t> chunks_done{0};
  const char* what = "writing";
  const int fd = ::open(w.path.c_str(), O_WRONLY | O_CLOEXEC);
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
      const WritePiece& p = w.pieces[ch.piece];
      const char* src = p.src + (ch.at - p.at);
      // Never save non-finite weights (the writer reads every byte anyway).
      if (w.specs[p.dataset].group == 0 && !all_finite(src, ch.next - ch.at)) {
        nonfinite = true;
        continue;
      }
      for (uint64_t a = ch.at; a < ch.next;) {
        const uint64_t block = a / kChecksumBlockBytes, b = std::min(ch.next, (block + 1) * kChecksumBlockBytes);
        mine.push_back({p.dataset, crc32c(src + (a - ch.at), b - a), block, a - block * kChecksumBlockBytes, b - a});
        a = b;
      }
      const uint64_t base = w.offsets[p.dataset];
      if (const int e = pwrite_full(fd, src, ch.next - ch.at, base + ch.at)) {
        err = e < 0 ? EIO : e;
        continue;
      }
      ::sync_file_range(fd, static_cast<off_t>(base + ch.at), static_cast<off_t>(ch.next - ch.at),
                        SYNC_FILE_RANGE_WRITE);
      bytes += ch.next - ch.at;
      const int64_t done = ++chunks_done;
      if (w.kill_me && done == 3) raise(SIGKILL);
      if (w.enospc && done == 1) err = ENOSPC;
      if (w.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(w.delay_ms));
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
  w.bytes = bytes.load();
  for (auto& v : parts) w.parts.insert(w.parts.end(), v.begin(), v.end());
  if (nonfinite)
    w.error = str_cat("refusing to checkpoint step ", w.step, " (host ", process_host(), ", rank ", process_rank(),
                      "): the weights hold NaN/inf values; the previous checkpoint is intact");
  else if (e)
    w.error = save_failure(w.step, what, w.path, std::strerror(e));
}

void write_checksum_tables(const ShardWrite& w, std::vector<BlockPart>& parts) {
  std::sort(parts.begin(), parts.end(), [](const BlockPart& a, const BlockPart& b) {
    return std::tie(a.dataset, a.block, a.start) < std::tie(b.dataset, b.block, b.start);
  });
  const size_t n = w.specs.size();
  std::vector<std::vector<uint32_t>> tables(n);
  for (size_t d = 0; d < n; ++d) tables[d].assign(w.specs[d].blocks(), 0);
  size_t blocks_done = 0, blocks_all = 0;
  for (size_t d = 0; d < n; ++d) blocks_all += tables[d].size();
  for (size_t i = 0; i < parts.size();) {
    const BlockPart& first = parts[i];
    LLAMAFT_CHECK(first.dataset < n && first.block < tables[first.dataset].size() && first.start == 0,
                  "checkpoint: block ", first.block, " of ", w.specs[first.dataset].name(), " does not start at 0");
    uint32_t crc = first.crc;
    uint64_t covered = first.len;
    size_t j = i + 1;
    for (; j < parts.size() && parts[j].dataset == first.dataset && parts[j].block == first.block; ++j) {
      LLAMAFT_CHECK(parts[j].start == covered, "checkpoint: block ", first.block, " of ",
                    w.specs[first.dataset].name(), " has a gap or an overlap at byte ", parts[j].start);
      crc = crc32c_combine(crc, parts[j].crc, parts[j].len);
      covered += parts[j].len;
    }
    const DatasetSpec& s = w.specs[first.dataset];
    LLAMAFT_CHECK(covered == std::min(kChecksumBlockBytes, s.bytes - first.block * kChecksumBlockBytes),
                  "checkpoint: block ", first.block, " of ", s.name(), " is not covered whole");
    tables[first.dataset][first.block] = crc;
    ++blocks_done;
    i = j;
  }
  LLAMAFT_CHECK(blocks_done == blocks_all, "checkpoint: ", blocks_all - blocks_done, " blocks were written by no rank");
  const int fd = ::open(w.path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(save_failure(w.step, "opening", w.path, std::strerror(errno)));
  int err = 0;
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the checksum tables are written as little-endian uint32");
  for (size_t d = 0; d < n && !err; ++d)
    if (const int e = pwrite_full(fd, tables[d].data(), tables[d].size() * sizeof(uint32_t), w.offsets[n + d]))
      err = e < 0 ? EIO : e;
  if (!err && ::fdatasync(fd) != 0) err = errno;
  ::close(fd);
  if (err) throw CheckpointError(save_failure(w.step, "writing the checksums of", w.path, std::strerror(err)));
}

std::string read_shards(hid_t f, int fd, int64_t format, Fsdp& fsdp, Backend& be, const std::string& where) {
  // Where they are host memory, read into the shards themselves (their
  // padding is zero from allocation and never read from a file); otherwise
  // into zeroed host copies uploaded whole.
  std::vector<Target> targets;
  std::vector<std::vector<float>> host;
  for (int u = 0; u < fsdp.layout().num_units(); ++u) {
    if (!fsdp.trainable(u)) continue;
    Target t{u, {fsdp.master(u), fsdp.exp_avg(u), fsdp.exp_avg_sq(u)}};
    for (int k = 0; k < 3 && !be.host_resident(); ++k) {
      host.emplace_back(fsdp.geometry(u).shard_size, 0.f);
      t.into[k] = host.back().data();
    }
    targets.push_back(t);
  }
  std::string error;
  const std::vector<Read> reads = plan_reads(f, format, fsdp, targets, where, error);
  if (error.empty()) error = read_all(fd, reads, where);
  if (!be.host_resident()) {
    size_t h = 0;
    for (const Target& t : targets)
      for (int k = 0; k < 3; ++k)
        be.to_device(k == 0 ? fsdp.master(t.unit) : k == 1 ? fsdp.exp_avg(t.unit) : fsdp.exp_avg_sq(t.unit),
                     host[h++].data(), fsdp.geometry(t.unit).shard_size * sizeof(float));
  }
  return error;
}

}  // namespace llamaft
