// The CUDA backend's StepCounters over whole FSDP training steps, and the
// budgets they must keep (issue #19): host synchronizations per micro-batch
// at most 4 and independent of the vocabulary, the sequence length, the
// layer count and the number of loss-head chunks; launches per layer
// bounded; no pass over a full-size unit gradient buffer when one rank holds
// the whole unit. The counted GEMM FLOPs and AdamW bytes are checked against
// formulas from the model's shapes, and (in the emulator) the counted kernel
// launches against the launches the emulator really ran.
//
// StepCountsAtSize.Dump is not a test: with LLAMAFT_STEP_COUNTS_OUT set (and
// the emulator's LLAMAFT_EMU_DRY=1, which runs nothing) it drives one step of
// a full-size preset and writes its counters as JSON for bench/roofline.py.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "comm/null_comm.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp.hpp"
#include "self_comm.hpp"

#ifdef LLAMAFT_CUDA_EMULATOR
#include <cuda_runtime.h>  // emu::launches()
#endif

namespace llamaft::cuda_test {
namespace {

LlamaConfig counted_config(int layers, int vocab) {
  LlamaConfig c = preset_config("tiny");
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  return c;
}

struct Shape {
  int layers = 2, vocab = 211, seq = 19, batch = 2, micro_batches = 1;
  bool bf16 = true;
  size_t head_chunk_bytes = kHeadChunkBytes;
};

HostBatch random_batch(int vocab, int seq, int rows, uint64_t seed) {
  static std::vector<TokenRow> keep;
  keep.assign(rows, TokenRow{});
  Rng rng(seed);
  std::vector<const TokenRow*> ptrs;
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < seq - 3 * r; ++i) keep[r].input_ids.push_back(int32_t(rng.next_u64() % vocab));
    keep[r].labels = keep[r].input_ids;
    ptrs.push_back(&keep[r]);
  }
  return make_batch(ptrs, seq);
}

struct Counted {
  StepCounters c;
  int64_t emulated_launches = -1;  // what the emulator ran during the counted step (-1: not the emulator)
  size_t fsdp_buffer_peak = 0;
  double matmul_params = 0;         // every GEMM weight: the blocks' projections and the LM head
  double trainable_params = 0;
  double shard_params = 0;          // this rank's shard of every unit
  CommStats comm;                   // the counted step's collectives (dry runs)
  int64_t rows = 0;                 // B * T per micro-batch
};

// Two optimizer steps; the counters cover the second (the first makes the
// cuBLASLt plans and grows the scratch buffers).
Counted count_steps(Backend& be, const LlamaConfig& cfg, const Shape& sh, bool write_weights = true,
                    int world = 1) {
  ModelOptions opts;
  opts.bf16_storage = sh.bf16;
  opts.head_chunk_bytes = sh.head_chunk_bytes;
  LlamaModel model(cfg, be, opts);
  // More than one rank: rank 0 of a full_shard world whose collectives move
  // nothing but count their bytes (the emulator computes nothing either).
  SelfComm self;
  NullComm dry(world, 0, {world, 1});
  Communicator& comm = world > 1 ? static_cast<Communicator&>(dry) : self;
  FsdpOptions options;
  options.bf16_params = sh.bf16;
  Fsdp fsdp(model.layout(), be, comm, options);
  Counted out;
  for (int u = 0; u < fsdp.num_units(); ++u) {
    if (write_weights) {
      Rng rng(9, u);
      std::vector<float> w(fsdp.geometry(u).shard_size);
      for (float& x : w) x = float(0.05 * rng.normal());
      be.to_device(fsdp.master(u), w.data(), w.size() * sizeof(float));
    }
    if (fsdp.trainable(u)) out.trainable_params += double(fsdp.geometry(u).numel);
    out.shard_params += double(fsdp.geometry(u).shard_size);
  }
  for (const Unit& unit : model.layout().units())
    for (const auto& t : unit.tensors)
      if (t.shape.size() == 2 && t.hf_name.find("embed_tokens") == std::string::npos)
        out.matmul_params += double(t.numel());
  out.matmul_params += double(cfg.vocab_size) * double(cfg.hidden_size) * (cfg.tie_word_embeddings ? 1 : 0);
  const HostBatch hb = random_batch(int(cfg.vocab_size), sh.seq, sh.batch, 3);
  out.rows = int64_t(hb.batch) * hb.seq;
  OptimizerConfig oc;
  oc.lr = 1e-3;
  oc.total_steps = 2;
  DeviceBatch dev(be);
  StepCounters* counters = be.counters();
  EXPECT_NE(counters, nullptr);
  int64_t launches0 = 0;
  CommStats comm0;
  for (int step = 0; step < 2; ++step) {
    if (step == 1) {
      counters->clear();
      comm0 = fsdp.comm_totals();
#ifdef LLAMAFT_CUDA_EMULATOR
      launches0 = emu::launches();
#endif
    }
    fsdp.zero_grad_shards();
    for (int k = 0; k < sh.micro_batches; ++k) {
      model.forward_backward(dev.upload(hb), fsdp, 1.f / float(hb.target_tokens * sh.micro_batches));
      fsdp.end_backward();
    }
    adamw_step(fsdp, be, oc, step);
  }
#ifdef LLAMAFT_CUDA_EMULATOR
  out.emulated_launches = emu::launches() - launches0;
#endif
  (void)launches0;
  out.c = *counters;
  const CommStats comm1 = fsdp.comm_totals();
  out.comm.all_gather_bytes = comm1.all_gather_bytes - comm0.all_gather_bytes;
  out.comm.reduce_scatter_bytes = comm1.reduce_scatter_bytes - comm0.reduce_scatter_bytes;
  out.comm.calls = comm1.calls - comm0.calls;
  out.fsdp_buffer_peak = fsdp.peak_buffer_bytes();
  return out;
}

// Memoised: the tests share shapes, and each emulated step takes seconds.
const Counted& count(const Shape& sh) {
  static std::map<std::tuple<int, int, int, int, int, bool, size_t>, Counted> done;
  const auto key = std::make_tuple(sh.layers, sh.vocab, sh.seq, sh.batch, sh.micro_batches, sh.bf16,
                                   sh.head_chunk_bytes);
  auto it = done.find(key);
  if (it == done.end()) {
    auto be = make_cuda_backend(0, kTestPoolBytes);
    it = done.emplace(key, count_steps(*be, counted_config(sh.layers, sh.vocab), sh)).first;
  }
  return it->second;
}

std::string syncs_text(const StepCounters& c) {
  std::string s;
  for (const auto& [site, n] : c.syncs) s += site + "=" + std::to_string(n) + " ";
  return s;
}

double family(const StepCounters& c, const std::string& name, double StepCounters::Family::*field) {
  auto it = c.ops.find(name);
  return it == c.ops.end() ? 0.0 : it->second.*field;
}

TEST(CudaStepCounters, HostSyncsPerMicroBatchAreFewAndIndependentOfSize) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  for (bool bf16 : {true, false}) {
    SCOPED_TRACE(bf16 ? "bf16" : "fp32");
    Shape base;
    base.bf16 = bf16;
    const Counted& one = count(base);
    Shape two_micro = base;
    two_micro.micro_batches = 2;
    const Counted& two = count(two_micro);
    const int64_t per_micro = two.c.total_syncs() - one.c.total_syncs();
    const int64_t per_step = one.c.total_syncs() - per_micro;
    std::printf("%s host syncs: one micro-batch %s| per micro-batch %lld, per step %lld\n", bf16 ? "bf16" : "fp32",
                syncs_text(one.c).c_str(), (long long)per_micro, (long long)per_step);
    EXPECT_LE(per_micro, 4) << syncs_text(two.c);
    EXPECT_LE(per_step, 2) << "the gradient norm and the updated weights' finiteness: " << syncs_text(one.c);
    EXPECT_EQ(one.c.syncs.count("to_host"), 0u) << "the step reads nothing back but the loss and the norms";
    EXPECT_EQ(one.c.syncs.count("upload_slot_reuse"), 0u);
    if (!bf16) continue;  // the storage type changes no sync site

    // Independent of the vocabulary, the sequence, the layers and the number of head chunks.
    Shape bigger_vocab = base, longer = base, deeper = base, chunked = base;
    bigger_vocab.vocab = 1500;
    longer.seq = 40;
    deeper.layers = 3;
    chunked.head_chunk_bytes = 5 * 211 * (bf16 ? 2 : 4);  // five rows a chunk: 8 chunks of 38 rows
    for (const Shape& s : {bigger_vocab, longer, deeper, chunked})
      EXPECT_EQ(count(s).c.syncs, one.c.syncs) << "layers " << s.layers << " vocab " << s.vocab << " seq " << s.seq
                                               << " chunk bytes " << s.head_chunk_bytes;
  }
}

// One more layer adds exactly one block's work: bounded launches, and the
// same again for the next layer. A block's forward is 2 rmsnorms, 4 GEMMs
// (fused qkv, o, fused gate-up, down), rope on q and k, attention, swiglu
// and 2 residual adds; its backward twice the GEMMs (dX and dW), the
// rmsnorm, rope, attention and swiglu backwards and the residual adds; then
// the unit's bf16 gathers (forward and backward), its gradient norm
// reduction and AdamW's share: 41 launches today. 48 leaves room for a
// split kernel; a loop per chunk, head or row would blow through it.
TEST(CudaStepCounters, LaunchesPerLayerAreBounded) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Shape s2, s3, s4;
  s3.layers = 3;
  s4.layers = 4;
  const Counted &c2 = count(s2), &c3 = count(s3), &c4 = count(s4);
  const int64_t per_layer = c3.c.total_launches() - c2.c.total_launches();
  std::printf("launches: %lld at 2 layers, %lld per extra layer\n", (long long)c2.c.total_launches(),
              (long long)per_layer);
  EXPECT_GT(per_layer, 20);
  EXPECT_LE(per_layer, 48);
  EXPECT_EQ(c4.c.total_launches() - c3.c.total_launches(), per_layer);
  // The step's fixed part (embedding, head, optimizer) is bounded too.
  EXPECT_LE(c2.c.total_launches() - 2 * per_layer, 96);
}

TEST(CudaStepCounters, OneRankAccumulatesStraightIntoTheGradientShard) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Shape fp32;
  fp32.bf16 = false;
  Shape fp32_two = fp32;
  fp32_two.micro_batches = 2;
  const Counted &one = count(fp32), &two = count(fp32_two);
  EXPECT_EQ(one.fsdp_buffer_peak, 0u) << "fp32 at one rank: no gather and no full-size gradient buffers";
  // A second micro-batch passes over no gradient buffer: fills and adds of
  // gradient size would be 4 (fill) + 12 (add) bytes a parameter.
  const auto passes = [](const StepCounters& c) {
    return family(c, "fill", &StepCounters::Family::bytes) + family(c, "axpy", &StepCounters::Family::bytes);
  };
  const double per_micro = passes(two.c) - passes(one.c);
  std::printf("fill + axpy bytes per micro-batch: %.0f; gradient bytes: %.0f\n", per_micro, 4 * one.trainable_params);
  EXPECT_LT(per_micro, 4 * one.trainable_params);
  // The per-step zeroing of the shards is the only fill of gradient size.
  EXPECT_GE(family(one.c, "fill", &StepCounters::Family::bytes), 4 * one.trainable_params);
}

// The counters against formulas from the shapes: a full fine-tuning step's
// GEMMs are 6 FLOPs per GEMM weight per row (forward, input gradient, weight
// gradient), and AdamW moves 28 bytes a parameter.
TEST(CudaStepCounters, FlopsAndBytesFollowTheShapes) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  for (bool bf16 : {true, false}) {
    Shape s;
    s.bf16 = bf16;
    const Counted& c = count(s);
    double gemm_flops = 0;
    int64_t gemm_calls = 0;
    for (const auto& [name, f] : c.c.ops)
      if (name.rfind("gemm", 0) == 0) {
        gemm_flops += f.flops;
        gemm_calls += f.calls;
        EXPECT_EQ(f.launches, f.calls) << name << ": one cuBLAS call each";
      }
    EXPECT_DOUBLE_EQ(gemm_flops, 6.0 * c.matmul_params * double(c.rows)) << (bf16 ? "bf16" : "fp32");
    EXPECT_DOUBLE_EQ(family(c.c, "adamw", &StepCounters::Family::bytes), 28.0 * c.trainable_params);
    // Causal attention at T = 19: 19 * 20 / 2 query-key pairs a head and sequence.
    const LlamaConfig cfg = counted_config(s.layers, s.vocab);
    const double pairs = 19.0 * 20 / 2;
    EXPECT_DOUBLE_EQ(family(c.c, "attention_fwd", &StepCounters::Family::flops),
                     4.0 * cfg.head_dim * pairs * cfg.num_attention_heads * s.batch * s.layers);
    EXPECT_GT(gemm_calls, 0);
#ifdef LLAMAFT_CUDA_EMULATOR
    // Every kernel the emulator ran is in some family (library calls are not kernels here).
    int64_t kernels = 0;
    for (const auto& [name, f] : c.c.ops) kernels += f.launches - f.library_calls;
    EXPECT_EQ(kernels, c.emulated_launches);
#endif
  }
}

// A preset at full size under the emulator's dry mode, for bench/roofline.py.
TEST(StepCountsAtSize, Dump) {
  const char* out_path = std::getenv("LLAMAFT_STEP_COUNTS_OUT");
  if (!out_path) GTEST_SKIP() << "set LLAMAFT_STEP_COUNTS_OUT (bench/roofline.py does)";
  LLAMAFT_SKIP_WITHOUT_GPU();
  const auto env_int = [](const char* name, int fallback) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : fallback;
  };
  const std::string preset = std::getenv("LLAMAFT_STEP_COUNTS_PRESET") ? std::getenv("LLAMAFT_STEP_COUNTS_PRESET")
                                                                        : "llama3.2-1b";
  const LlamaConfig cfg = preset_config(preset);
  Shape s;
  s.seq = env_int("LLAMAFT_STEP_COUNTS_SEQ", 2048);
  s.batch = env_int("LLAMAFT_STEP_COUNTS_BATCH", 4);
  s.layers = int(cfg.num_hidden_layers);
  s.vocab = int(cfg.vocab_size);
  s.bf16 = true;
  const int world = env_int("LLAMAFT_STEP_COUNTS_WORLD", 1);
  auto be = make_cuda_backend(0);
  const Counted c = count_steps(*be, cfg, s, /*write_weights=*/false, world);
  std::ofstream f(out_path);
  f.precision(17);
  f << "{\n  \"preset\": \"" << preset << "\", \"seq\": " << s.seq << ", \"micro_batch\": " << s.batch
    << ", \"rows\": " << c.rows << ",\n  \"matmul_params\": " << c.matmul_params
    << ", \"trainable_params\": " << c.trainable_params << ", \"layers\": " << cfg.num_hidden_layers
    << ", \"hidden\": " << cfg.hidden_size << ", \"heads\": " << cfg.num_attention_heads
    << ", \"head_dim\": " << cfg.head_dim << ", \"vocab\": " << cfg.vocab_size << ", \"world\": " << world
    << ", \"shard_params\": " << c.shard_params << ", \"peak_device_bytes\": " << be->peak_bytes()
    << ",\n  \"comm\": {\"all_gather_bytes\": " << c.comm.all_gather_bytes
    << ", \"reduce_scatter_bytes\": " << c.comm.reduce_scatter_bytes << ", \"calls\": " << c.comm.calls
    << "},\n  \"syncs\": {";
  const char* sep = "";
  for (const auto& [site, n] : c.c.syncs) {
    f << sep << "\"" << site << "\": " << n;
    sep = ", ";
  }
  f << "},\n  \"ops\": {\n";
  sep = "";
  for (const auto& [name, fam] : c.c.ops) {
    f << sep << "    \"" << name << "\": {\"calls\": " << fam.calls << ", \"launches\": " << fam.launches
      << ", \"library_calls\": " << fam.library_calls << ", \"bytes\": " << fam.bytes << ", \"flops\": " << fam.flops
      << "}";
    sep = ",\n";
  }
  f << "\n  }\n}\n";
  ASSERT_TRUE(f.good()) << out_path;
}

}  // namespace
}  // namespace llamaft::cuda_test
