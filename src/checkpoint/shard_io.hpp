// Shard I/O of format 2 (h5_format.hpp): each rank pwrite()s the slices of
// the datasets it owns at their file offsets and fdatasync()s, checksumming
// every 1 MiB block it touches with CRC-32C; rank 0 joins the parts of each
// block (crc32c_combine) into the checksum tables; a loader reads its slices
// and verifies every block they touch. No MPI here, and no HDF5 on the write
// side, so a writer may run on a thread of its own.
#pragma once

#include <hdf5.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "checkpoint/h5_format.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// Writes go out in pieces of this size (a whole number of checksum blocks),
// each followed by a request to start its writeback, so the disk is busy
// while the next piece is checksummed.
constexpr uint64_t kWriteBytes = 16 * kChecksumBlockBytes;

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

// One rank's write of one checkpoint file: what to write, and its outcome.
struct ShardWrite {
  int64_t step = 0;
  std::string path;
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
  // Test seams (fault points): a SIGKILL or an ENOSPC part-way, a slow disk.
  bool kill_me = false, enospc = false;
  int64_t delay_ms = 0;
  // The outcome.
  std::string error;             // "" or what failed
  std::vector<BlockPart> parts;  // this rank's block checksums
  uint64_t bytes = 0;            // written by this rank
};

// Reserves the size of the file at `path` on disk before any data is
// written, so a full disk fails here, where the ranks can still agree on it.
void reserve_file_space(const std::string& path, int64_t step);

// The writer: the copies, then this rank's pieces, each block's CRC-32C,
// then fdatasync, on `threads` threads. Refuses non-finite weights.
void write_shards(ShardWrite& w, int threads);

// Rank 0: joins every writer's block parts (`parts`, every rank's) into one
// CRC-32C per block, checks that every block was covered exactly once, and
// writes the tables at their offsets.
void write_checksum_tables(const ShardWrite& w, std::vector<BlockPart>& parts);

// Reads this rank's slices of every trainable unit's weights and both
// moments from the open checkpoint (`fd`: format 2's file, read directly)
// into the shards, and uploads them where the shards are device memory.
// Throws (every rank alike) on a missing dataset or a wrong shape; returns
// "" or this rank's first read or checksum failure, for the caller to agree on.
std::string read_shards(hid_t file, int fd, int64_t format, Fsdp& fsdp, Backend& be, const std::string& where);

}  // namespace llamaft
