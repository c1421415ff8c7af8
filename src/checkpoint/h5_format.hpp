// The format of checkpoint.dir/step_N/state.h5, and the HDF5 calls that make
// and read it (serial HDF5; no MPI). Every tensor sits at its Hugging Face
// name in its full logical shape: /model/<name> (fp32 master weights),
// /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>; /state holds the training
// position; attributes record the format, the configs, the base model's
// fingerprint, the world size and the strategy.
//
// Format 2 (written): contiguous datasets allocated when the file is
// created and never filled, so ranks pwrite() their slices at the offsets
// create_state_file() returns (shard_io.hpp), each 1 MiB block with a
// CRC-32C in /checksums/<group>/<name>. Format 1 (still read): chunked
// datasets checked by HDF5's Fletcher-32 filter.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/state.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// The groups of a trainable tensor's datasets, in the order k = 0, 1, 2.
inline constexpr const char* kGroups[3] = {"model", "optim/exp_avg", "optim/exp_avg_sq"};

// Owns an hid_t and closes it with the right H5?close.
class H5Handle {
 public:
  H5Handle() = default;
  H5Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(closer_, o.closer_);
    return *this;
  }
  ~H5Handle() {
    if (id_ >= 0 && closer_) closer_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*closer_)(hid_t) = nullptr;
};

// A handle that is valid, or a CheckpointError saying `what`.
H5Handle h5_checked(hid_t id, herr_t (*closer)(hid_t), const std::string& what);

// Serial HDF5 (sec2): rank 0 alone creates a file, every rank may read one.
H5Handle file_access();

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
DatasetTable dataset_table(const Fsdp& fsdp);

// Creates `path` (rank 0) with every dataset of `specs` allocated but
// unwritten, the state and identity attributes, and returns each dataset's
// file offset, then each checksum table's. When it returns, the file is
// closed at its full size.
std::vector<uint64_t> create_state_file(const std::string& path, const std::vector<DatasetSpec>& specs,
                                        const TrainState& state, const RunIdentity& id, int world_size);

// Checks an open checkpoint's format and that it may resume a run of
// `expect` (a mismatch is a user error naming both values; `lead` prints the
// changes allowed by checkpoint.allow_*). Returns the format version.
int64_t check_checkpoint(hid_t file, const std::string& path, const std::string& where, const RunIdentity& expect,
                         bool lead);
TrainState read_train_state(hid_t file, const std::string& path, const std::string& where);

// Opens dataset `name`; a missing one is a CheckpointError, another shape
// than `shape` a user error.
H5Handle open_dataset(hid_t file, const std::string& name, const std::vector<int64_t>& shape,
                      const std::string& where);
// Format 1: reads elements [elem, elem + count) of the row-major dataset
// into dst through HDF5 (and its Fletcher-32 filter); false when it fails.
bool read_flat_range(hid_t dataset, const std::vector<int64_t>& shape, int64_t elem, int64_t count, float* dst);
// Format 2: where the dataset's data starts in the file and its checksum
// table (`blocks` entries); false when either is missing.
bool locate_data(hid_t file, hid_t dataset, const std::string& name, size_t blocks, uint64_t* base,
                 std::vector<uint32_t>* crcs);

}  // namespace llamaft
