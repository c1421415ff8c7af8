// Shared by the tests in tests/mpi_unit: the world communicator, a small
// model layout with uneven unit sizes, and values that are a pure function of
// (unit, element), so every rank count sees the same logical tensors.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>

#include "backend/backend.hpp"
#include "comm/mpi_comm.hpp"
#include "model/llama_config.hpp"
#include "model/param_layout.hpp"

namespace llamaft::mpi_unit {

inline MpiCommunicator& world() {
  static std::unique_ptr<MpiCommunicator> w = make_mpi_world_communicator();
  return *w;
}

inline Backend& cpu() {
  static std::unique_ptr<Backend> be = make_cpu_backend();
  return *be;
}

// Two blocks and odd sizes (vocab 67, hidden 24): units whose lengths are not
// multiples of 2, so shards at np = 2 carry padding.
inline LlamaConfig small_config() {
  LlamaConfig c = preset_config("tiny");
  c.vocab_size = 67;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 6;
  return c;
}

// An exactly representable float for (unit, element, salt): multiples of
// 1/64 in [-4, 4), so sums of a few of them are exact in fp32 in any order.
inline float dyadic(int unit, int64_t i, int salt) {
  const int64_t k = (i * 131 + unit * 977 + salt * 7919) % 512;
  return static_cast<float>(k - 256) / 64.0f;
}

// A float with a full mantissa for (unit, element, salt), for bit-exact copies.
inline float irregular(int unit, int64_t i, int salt) {
  return static_cast<float>(std::sin(0.731 * static_cast<double>(i) + 1.3 * unit + 0.17 * salt) *
                            (1.0 + 0.01 * static_cast<double>(i % 97)));
}

}  // namespace llamaft::mpi_unit
