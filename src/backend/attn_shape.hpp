// The shape of one attention call: a plain struct with no virtual functions,
// so the CUDA kernels (kernels/attention*.cuh) include it without pulling in
// the Backend interface.
#pragma once

#include <cstdint>

namespace llamaft {

// Causal grouped-query attention over packed (token, head, head_dim) rows.
// q: (B*Tq, ldq) with head h at column h*hd; k, v: (B*Tk, ldk) with kv head g
// at column g*hd. Query t of row b sits at absolute position q_offset + t and
// may attend to keys s <= q_offset + t (s >= doc_start[b*Tq + t] when
// doc_start is given, for packed sequences).
struct AttnShape {
  int batch = 1;
  int tq = 0, tk = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int q_offset = 0;
  int ldq = 0, ldk = 0, ldv = 0, ldo = 0;  // row strides in elements
  float scale = 1.f;
  const int32_t* doc_start = nullptr;      // (B*Tq) or null
};

}  // namespace llamaft
