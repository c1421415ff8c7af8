// Model FLOPs utilisation (MFU): the FLOPs the model's arithmetic needs per
// trained token, over the peak the ranks can do. The model FLOPs follow
// PaLM's convention (Chowdhery et al. 2022, appendix B), as torchtitan and
// Megatron report them:
//   full fine-tuning  6·N + 12·L·T·d   (forward 2N, backward 4N; attention's
//                                       QKᵀ and AV over the whole T x T square)
//   LoRA / QLoRA      4·N + 6·N_lora + 12·L·T·d   (the frozen base needs no
//                                       weight gradients, only dX)
// with N the parameters in matrix products (the blocks and the LM head, not
// the embedding lookup), L layers, T the sequence length, d the query width.
// Activation checkpointing's recomputation is not counted (that would be
// hardware FLOPs, HFU).
// The peak: output.peak_tflops when a site gives it (the device's datasheet
// dense figure), else a GEMM measured once at start-up on each rank at the
// same time (so ranks that share cores share the peak), in the dtype the
// run's GEMMs use: SGEMM, or the bf16 GEMM with train.param_dtype = bf16.
#pragma once

#include <cstdint>

#include "backend/backend.hpp"
#include "model/llama_config.hpp"

namespace llamaft {

// FLOPs per input token of one training step (see above).
double train_flops_per_token(const LlamaConfig& c, bool lora, int64_t adapter_params, int seq_len);

struct GemmPeak {
  double flops_per_s = 0;  // this rank's best
  double seconds = 0;      // time the measurement took
  int size = 0;            // square GEMM edge
};
// Times square GEMMs on `be` (fp32, or bf16 operands with bf16 output) for
// about `budget_s` after one warm-up call and returns the best rate. The
// scratch buffers are freed and the backend's peak-bytes mark restored, so the
// measurement leaves no trace in the memory figures.
// `size` 0: 512 on a CPU, 4096 on a GPU.
GemmPeak measure_gemm_peak(Backend& be, bool bf16, double budget_s = 0.15, int size = 0);

}  // namespace llamaft
