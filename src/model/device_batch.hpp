// Uploads a host batch into backend memory and exposes it as a model Batch.
#pragma once

#include "backend/device_array.hpp"
#include "data/token_dataset.hpp"
#include "model/llama.hpp"

namespace llamaft {

class DeviceBatch {
 public:
  explicit DeviceBatch(Backend& be) : be_(be) {}
  Batch upload(const HostBatch& hb) {
    const size_t n = hb.ids.size();
    ids_.resize(be_, n);
    pos_.resize(be_, n);
    tgt_.resize(be_, n);
    // The ids are mirrored: the embedding backward groups them on the host.
    be_.to_device_mirrored(ids_.data(), hb.ids.data(), n * sizeof(int32_t));
    be_.to_device(pos_.data(), hb.positions.data(), n * sizeof(int32_t));
    be_.to_device(tgt_.data(), hb.targets.data(), n * sizeof(int32_t));
    Batch b;
    if (!hb.doc_start.empty()) {
      doc_.resize(be_, n);
      be_.to_device(doc_.data(), hb.doc_start.data(), n * sizeof(int32_t));
      b.doc_start = doc_.data();
    }
    b.batch = hb.batch;
    b.seq = hb.seq;
    b.ids = ids_.data();
    b.positions = pos_.data();
    b.targets = tgt_.data();
    b.target_tokens = hb.target_tokens;  // make_batch counted them: the model reads nothing back
    b.dropout_keys = hb.dropout_keys.empty() ? nullptr : hb.dropout_keys.data();  // host memory, as the model wants
    return b;
  }

 private:
  Backend& be_;
  DeviceArray<int32_t> ids_, pos_, tgt_, doc_;
};

}  // namespace llamaft
