// The format of state.h5 (h5_format.hpp): its HDF5 helpers, the file's
// creation with every dataset allocated, its attributes, and the checks a
// loader makes before it reads any data.
#include "checkpoint/h5_format.hpp"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

#define H5_CHECK(expr, ...)                                                                    \
  do {                                                                                         \
    if ((expr) < 0) throw CheckpointError(str_cat(where_prefix(), __VA_ARGS__, " (HDF5 call `", \
                                                  #expr, "` failed at ", __FILE__, ":", __LINE__, ")")); \
  } while (0)

H5Handle h5_checked(hid_t id, herr_t (*closer)(hid_t), const std::string& what) {
  if (id < 0) throw CheckpointError(str_cat(where_prefix(), what));
  return H5Handle(id, closer);
}

// Objects of 4 KiB and more start on a 4 KiB page.
H5Handle file_access() {
  H5Handle fapl = h5_checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate failed");
  H5_CHECK(H5Pset_fapl_sec2(fapl.get()), "cannot use the sec2 driver");
  H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "cannot set format bounds");
  H5_CHECK(H5Pset_alignment(fapl.get(), 4096, 4096), "cannot set the alignment");
  // Object headers in 1 MiB blocks, not between the datasets' data: a loader
  // opening every dataset reads a few blocks instead of seeking ~1000 times.
  H5_CHECK(H5Pset_meta_block_size(fapl.get(), 1 << 20), "cannot set the metadata block size");
  return fapl;
}

namespace {

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

// A scalar attribute of `type`, created on obj; a checkpoint's attributes are written once.
H5Handle create_attr(hid_t obj, const char* name, hid_t type) {
  H5Handle space = h5_checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate failed");
  return h5_checked(H5Acreate2(obj, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    str_cat("cannot create attribute ", name));
}

H5Handle open_attr(hid_t obj, const char* name, const std::string& path) {
  return h5_checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose,
                    str_cat(path, ": checkpoint has no '", name, "' attribute (not a llamaft checkpoint?)"));
}

void write_attr_i64(hid_t obj, const char* name, int64_t v) {
  H5Handle a = create_attr(obj, name, H5T_STD_I64LE);
  H5_CHECK(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), "cannot write attribute ", name);
}

void write_attr_str(hid_t obj, const char* name, const std::string& v) {
  H5Handle type = h5_checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy failed");
  H5_CHECK(H5Tset_size(type.get(), std::max<size_t>(1, v.size())), "H5Tset_size failed");
  H5Handle a = create_attr(obj, name, type.get());
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  H5_CHECK(H5Awrite(a.get(), type.get(), buf.data()), "cannot write attribute ", name);
}

int64_t read_attr_i64(hid_t obj, const char* name, const std::string& path) {
  H5Handle a = open_attr(obj, name, path);
  int64_t v = 0;
  H5_CHECK(H5Aread(a.get(), H5T_NATIVE_INT64, &v), path, ": cannot read attribute ", name);
  return v;
}

std::string read_attr_str(hid_t obj, const char* name, const std::string& path) {
  H5Handle a = open_attr(obj, name, path);
  H5Handle type = h5_checked(H5Aget_type(a.get()), H5Tclose, "H5Aget_type failed");
  const size_t n = H5Tget_size(type.get());
  std::string v(n, '\0');
  H5_CHECK(H5Aread(a.get(), type.get(), v.data()), path, ": cannot read attribute ", name);
  while (!v.empty() && v.back() == '\0') v.pop_back();
  return v;
}

void write_attributes(hid_t file, const TrainState& st, const RunIdentity& id, int world_size) {
  H5Handle g_state = h5_checked(H5Gcreate2(file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "group");
  const hid_t s = g_state.get();
  write_attr_i64(s, "step", st.step);
  write_attr_i64(s, "consumed_rows", st.consumed_rows);
  write_attr_i64(s, "consumed_tokens", st.consumed_tokens);
  write_attr_i64(s, "skips_in_row", st.skips_in_row);
  write_attr_i64(s, "lr_schedule_step", st.step);
  write_attr_i64(s, "data_position", st.consumed_rows);
  write_attr_i64(s, "rng_seed", id.seed);  // the data order and init are pure functions of (seed, step)
  const hid_t f = file;
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
}

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

// The data position is a row index into this data: other data (or rows cut
// to another length) continue from the same index only when asked to. The
// data is compared by content (older checkpoints: by path).
void check_data_identity(hid_t f, const std::string& path, const std::string& where, const RunIdentity& expect,
                         bool lead) {
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
  if (data_differs && lead)
    std::cerr << "llamaft train: checkpoint.allow_data_change = true: resuming on data.path = '" << expect.data_path
              << "', data.seq_len = " << now_seq << " (the checkpoint was trained on '" << saved_data << "'"
              << (saved_seq.empty() ? "" : ", seq_len " + saved_seq) << ")\n";
}

}  // namespace

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

std::vector<uint64_t> create_state_file(const std::string& path, const std::vector<DatasetSpec>& specs,
                                        const TrainState& state, const RunIdentity& id, int world_size) {
  const size_t n = specs.size();
  std::vector<uint64_t> offsets(2 * n, 0);
  H5Handle fapl = file_access();
  H5Handle file = h5_checked(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), H5Fclose,
                             save_failure(state.step, "creating", path, "HDF5 could not create the file"));
  H5Handle lcpl = h5_checked(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate failed");
  H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group failed");
  // Contiguous, allocated now, never filled: rank writes land at fixed offsets.
  H5Handle dcpl = h5_checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate failed");
  H5_CHECK(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), "H5Pset_layout failed");
  H5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time failed");
  H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "H5Pset_fill_time failed");
  auto create = [&](const std::string& name, hid_t type, const std::vector<hsize_t>& dims) {
    H5Handle space = h5_checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, "space");
    H5Handle ds = h5_checked(H5Dcreate2(file.get(), name.c_str(), type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                             H5Dclose, str_cat("cannot create dataset ", name, " in ", path));
    const haddr_t at = H5Dget_offset(ds.get());
    if (at == HADDR_UNDEF) throw CheckpointError(str_cat("HDF5 gave no offset for dataset ", name, " in ", path));
    return static_cast<uint64_t>(at);
  };
  // The data in order, then every checksum table together (a loader
  // reads them all before any data).
  for (size_t i = 0; i < n; ++i)
    offsets[i] = create(specs[i].name(), H5T_IEEE_F32LE, std::vector<hsize_t>(specs[i].shape.begin(), specs[i].shape.end()));
  for (size_t i = 0; i < n; ++i) offsets[n + i] = create(specs[i].checksum_name(), H5T_STD_U32LE, {specs[i].blocks()});
  write_attributes(file.get(), state, id, world_size);
  return offsets;  // the handles close here: the file has its full size (the end of its allocations)
}

int64_t check_checkpoint(hid_t f, const std::string& path, const std::string& where, const RunIdentity& expect,
                         bool lead) {
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
  check_lora_identity(f, path, where, expect, lead);
  check_data_identity(f, path, where, expect, lead);
  if (format == 2) {
    const std::string algo = read_attr_str(f, "checksum", path);
    const auto block_bytes = static_cast<uint64_t>(read_attr_i64(f, "checksum_block_bytes", path));
    LLAMAFT_REQUIRE(algo == "crc32c" && block_bytes == kChecksumBlockBytes, where, " has checksums '", algo,
                    "' over ", block_bytes, "-byte blocks; this llamaft reads crc32c over ", kChecksumBlockBytes);
  }
  return format;
}

TrainState read_train_state(hid_t f, const std::string& path, const std::string& where) {
  TrainState st;
  H5Handle gs = h5_checked(H5Gopen2(f, "state", H5P_DEFAULT), H5Gclose, str_cat(where, " has no /state group"));
  st.step = read_attr_i64(gs.get(), "step", path);
  st.consumed_rows = read_attr_i64(gs.get(), "consumed_rows", path);
  st.consumed_tokens = read_attr_i64(gs.get(), "consumed_tokens", path);
  st.skips_in_row = read_attr_i64(gs.get(), "skips_in_row", path);
  return st;
}

H5Handle open_dataset(hid_t f, const std::string& name, const std::vector<int64_t>& shape, const std::string& where) {
  H5Handle ds(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) throw CheckpointError(str_cat(where, " has no dataset '/", name, "'"));
  H5Handle fspace(H5Dget_space(ds.get()), H5Sclose);
  std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(fspace.get()));
  H5Sget_simple_extent_dims(fspace.get(), dims.data(), nullptr);
  if (std::vector<int64_t>(dims.begin(), dims.end()) != shape)
    throw Error(str_cat(where, ": dataset '/", name, "' has a different shape than this model needs"));
  return ds;
}

bool read_flat_range(hid_t ds, const std::vector<int64_t>& shape, int64_t elem, int64_t count, float* dst) {
  H5Handle fspace(H5Dget_space(ds), H5Sclose);
  hsize_t mcount = static_cast<hsize_t>(count);
  H5Handle mspace(H5Screate_simple(1, &mcount, nullptr), H5Sclose);
  select_flat_range(fspace.get(), shape, elem, count);
  return H5Dread(ds, H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), H5P_DEFAULT, dst) >= 0;
}

bool locate_data(hid_t f, hid_t ds, const std::string& name, size_t blocks, uint64_t* base,
                 std::vector<uint32_t>* crcs) {
  crcs->resize(blocks);
  const haddr_t at = H5Dget_offset(ds);
  H5Handle cds(H5Dopen2(f, ("checksums/" + name).c_str(), H5P_DEFAULT), H5Dclose);
  hssize_t stored = -1;
  if (cds.ok()) {
    H5Handle cspace(H5Dget_space(cds.get()), H5Sclose);
    stored = H5Sget_simple_extent_npoints(cspace.get());
  }
  if (at == HADDR_UNDEF || stored != static_cast<hssize_t>(blocks) ||
      H5Dread(cds.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, crcs->data()) < 0)
    return false;
  *base = static_cast<uint64_t>(at);
  return true;
}

}  // namespace llamaft
