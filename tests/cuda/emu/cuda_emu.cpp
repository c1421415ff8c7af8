// The fiber scheduler and fake runtime/cuBLAS behind cuda_emu.hpp.
#include "cuda_emu.hpp"

#include <cublas_v2.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <map>

#include "core/dtype.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim{1, 1, 1};
dim3 gridDim{1, 1, 1};

namespace emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxDynamicSmem = 166912;  // sm_80's opt-in limit, the smaller of our targets
constexpr size_t kSmemAlign = 128;        // the dynamic shared memory base alignment kernels may assume

enum class State { kRunnable, kBlockWait, kWarpWait, kDone };

struct Fiber {
  ucontext_t ctx;
  char* stack = nullptr;
  State state = State::kDone;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  int current = 0;
  int threads = 0;
  int live = 0;
  int block_arrived = 0;
  std::vector<int> warp_arrived, warp_live;
  std::vector<uint64_t> exchange;  // (warps, 32)
  std::vector<unsigned char> smem;
  const std::function<void()>* body = nullptr;
  bool reverse = false;
  struct MmaSlot {
    uint32_t a[4], b[2];
    float c[4];
  };
  std::vector<MmaSlot> mma;  // (warps * 32)
  struct Copy {
    void* dst;
    const void* src;
    size_t bytes;
  };
  struct CpAsync {
    std::vector<Copy> open;                  // not yet committed
    std::vector<std::vector<Copy>> groups;   // committed, oldest first
  };
  std::vector<CpAsync> cp;  // per thread
} g;

cudaError_t g_last_error = cudaSuccess;
long long g_launches = 0;
const bool g_dry = [] {
  const char* v = std::getenv("LLAMAFT_EMU_DRY");
  return v && std::string(v) == "1";
}();

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "cuda_emu: %s (block %u,%u,%u)\n", msg.c_str(), blockIdx.x, blockIdx.y, blockIdx.z);
  std::abort();
}

int warp_of(int tid) { return tid / 32; }

void set_thread_index(int tid) {
  threadIdx.x = unsigned(tid) % blockDim.x;
  threadIdx.y = (unsigned(tid) / blockDim.x) % blockDim.y;
  threadIdx.z = unsigned(tid) / (blockDim.x * blockDim.y);
}

void yield_to_scheduler() { swapcontext(&g.fibers[g.current].ctx, &g.scheduler); }

void release_block_if_complete() {
  if (g.block_arrived == 0 || g.block_arrived < g.live) return;
  for (auto& f : g.fibers)
    if (f.state == State::kBlockWait) f.state = State::kRunnable;
  g.block_arrived = 0;
}

void release_warp_if_complete(int w) {
  if (g.warp_arrived[w] == 0 || g.warp_arrived[w] < g.warp_live[w]) return;
  for (int t = w * 32; t < std::min(g.threads, (w + 1) * 32); ++t)
    if (g.fibers[t].state == State::kWarpWait) g.fibers[t].state = State::kRunnable;
  g.warp_arrived[w] = 0;
}

void fiber_entry() {
  (*g.body)();
  const int tid = g.current;
  g.fibers[tid].state = State::kDone;
  --g.live;
  --g.warp_live[warp_of(tid)];
  release_block_if_complete();
  release_warp_if_complete(warp_of(tid));
  // returning switches to uc_link, the scheduler
}

void run_block() {
  for (int t = 0; t < g.threads; ++t) {
    Fiber& f = g.fibers[t];
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &g.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
    f.state = State::kRunnable;
  }
  g.live = g.threads;
  g.block_arrived = 0;
  const int warps = (g.threads + 31) / 32;
  g.warp_arrived.assign(warps, 0);
  g.warp_live.assign(warps, 0);
  for (int t = 0; t < g.threads; ++t) ++g.warp_live[warp_of(t)];
  std::fill(g.smem.begin(), g.smem.end(), 0xFF);  // uninitialised shared memory reads as NaN (also bf16)
  g.mma.assign(size_t(warps) * 32, Block::MmaSlot{});
  g.cp.assign(size_t(g.threads), Block::CpAsync{});
  for (;;) {
    bool ran = false;
    for (int k = 0; k < g.threads; ++k) {
      const int t = g.reverse ? g.threads - 1 - k : k;
      if (g.fibers[t].state != State::kRunnable) continue;
      ran = true;
      g.current = t;
      set_thread_index(t);
      swapcontext(&g.scheduler, &g.fibers[t].ctx);
    }
    if (!ran) break;
  }
  if (g.live > 0) {
    int at_block = 0, at_warp = 0;
    for (auto& f : g.fibers) {
      at_block += f.state == State::kBlockWait;
      at_warp += f.state == State::kWarpWait;
    }
    die("deadlock: " + std::to_string(at_block) + " threads wait in __syncthreads, " + std::to_string(at_warp) +
        " in a warp collective, " + std::to_string(g.threads - g.live) + " have exited");
  }
  for (const auto& c : g.cp)
    if (!c.open.empty() || !c.groups.empty()) die("a thread exited with cp.async copies it never waited for");
}

}  // namespace

void launch_impl(const std::function<void()>& body, dim3 grid, dim3 block, size_t dynamic_smem) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u || dynamic_smem > size_t(kMaxDynamicSmem)) {
    std::fprintf(stderr, "cuda_emu: invalid launch grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", grid.x, grid.y,
                 grid.z, block.x, block.y, block.z, dynamic_smem);
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  ++g_launches;
  if (g_dry) return;
  if (const char* order = std::getenv("LLAMAFT_EMU_ORDER")) g.reverse = std::string(order) == "reverse";
  g.threads = int(threads);
  if (g.fibers.size() < threads) g.fibers.resize(threads);
  for (auto& f : g.fibers)
    if (!f.stack) f.stack = static_cast<char*>(std::malloc(kStackBytes));
  g.exchange.assign(((threads + 31) / 32) * 32, 0);
  g.smem.assign(dynamic_smem + kSmemAlign, 0);  // room to align the start as the GPU does
  g.body = &body;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = uint3{x, y, z};
        run_block();
      }
}

unsigned char* dynamic_smem() {
  const auto at = reinterpret_cast<uintptr_t>(g.smem.data());
  return g.smem.data() + (kSmemAlign - at % kSmemAlign) % kSmemAlign;
}

void syncthreads() {
  g.fibers[g.current].state = State::kBlockWait;
  ++g.block_arrived;
  release_block_if_complete();
  yield_to_scheduler();
}

void syncwarp() {
  const int w = warp_of(g.current);
  g.fibers[g.current].state = State::kWarpWait;
  ++g.warp_arrived[w];
  release_warp_if_complete(w);
  yield_to_scheduler();
}

uint64_t exchange(uint64_t mine, int src_lane) {
  const int w = warp_of(g.current), lane = g.current % 32;
  if (src_lane < 0 || src_lane >= 32 || w * 32 + src_lane >= g.threads) die("shuffle from a lane that does not exist");
  g.exchange[w * 32 + lane] = mine;
  syncwarp();  // every lane has published
  const uint64_t theirs = g.exchange[w * 32 + src_lane];
  syncwarp();  // every lane has read before anyone publishes again
  return theirs;
}

void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  const int w = warp_of(g.current), lane = g.current % 32;
  if (g.warp_live[w] != 32) die("mma.sync needs all 32 lanes of the warp");
  Block::MmaSlot& mine = g.mma[size_t(w) * 32 + lane];
  std::memcpy(mine.a, a, sizeof(mine.a));
  std::memcpy(mine.b, b, sizeof(mine.b));
  std::memcpy(mine.c, c, sizeof(mine.c));
  syncwarp();  // every lane has published
  const auto half = [](uint32_t reg, int hi) { return llamaft::bf16_to_f32(uint16_t(hi ? reg >> 16 : reg & 0xFFFF)); };
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const Block::MmaSlot& s = g.mma[size_t(w) * 32 + l];
    const int gq = l / 4, tq = l % 4;
    for (int r = 0; r < 4; ++r)  // a[r]: rows gq (+8 for r odd), columns 2t (+8 for r >= 2)
      for (int e = 0; e < 2; ++e) A[gq + 8 * (r & 1)][2 * tq + e + 8 * (r >> 1)] = half(s.a[r], e);
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e) B[2 * tq + e + 8 * r][gq] = half(s.b[r], e);
    for (int i = 0; i < 4; ++i) C[gq + 8 * (i >> 1)][2 * tq + (i & 1)] = s.c[i];
  }
  syncwarp();  // every lane has read before anyone publishes again
  const int gq = lane / 4, tq = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = gq + 8 * (i >> 1), col = 2 * tq + (i & 1);
    float acc = C[row][col];
    for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
    d[i] = acc;
  }
}

void cp_async(void* dst, const void* src, size_t bytes) {
  if (reinterpret_cast<uintptr_t>(dst) % bytes || reinterpret_cast<uintptr_t>(src) % bytes)
    die("cp.async with a misaligned address");
  g.cp[size_t(g.current)].open.push_back({dst, src, bytes});
}
void cp_async_commit() {
  auto& c = g.cp[size_t(g.current)];
  c.groups.push_back(std::move(c.open));
  c.open.clear();
}
void cp_async_wait(int pending) {
  auto& c = g.cp[size_t(g.current)];
  while (int(c.groups.size()) > pending) {
    for (const auto& copy : c.groups.front()) std::memcpy(copy.dst, copy.src, copy.bytes);
    c.groups.erase(c.groups.begin());
  }
}

void set_error(cudaError_t e) { g_last_error = e; }
int max_dynamic_smem() { return kMaxDynamicSmem; }
long long launches() { return g_launches; }
bool dry() { return g_dry; }

}  // namespace emu

// ---- runtime --------------------------------------------------------------------------
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNotReady: return "device not ready";
  }
  return "unknown error";
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNotReady: return "cudaErrorNotReady";
  }
  return "cudaErrorUnknown";
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return emu::g_last_error; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = 108; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = emu::max_dynamic_smem(); return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
namespace {
std::map<void*, size_t> g_dry_maps;  // dry mode: reserved, never touched
}  // namespace
cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (emu::dry()) {  // 256-byte aligned, as mmap's pages are
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
    g_dry_maps[m] = bytes;
    *p = m;
    return cudaSuccess;
  }
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!*p) return cudaErrorMemoryAllocation;
  if (bytes <= (size_t(1) << 30)) std::memset(*p, 0xFF, bytes);  // fresh device memory reads as NaN
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (auto it = g_dry_maps.find(p); it != g_dry_maps.end()) {
    munmap(p, it->second);
    g_dry_maps.erase(it);
    return cudaSuccess;
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  // Dry runs plan full-size models: an H200's 141 GB (143771 MiB), less the context.
  *total_bytes = emu::dry() ? size_t(143771) << 20 : size_t(8) << 30;
  *free_bytes = emu::dry() ? *total_bytes - (size_t(1) << 30) : size_t(6) << 30;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  if (emu::dry()) {  // device contents are not kept; what comes back to the host reads as zeros
    if (kind == cudaMemcpyDeviceToHost && bytes) std::memset(dst, 0, bytes);
    return cudaSuccess;
  }
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  if (!emu::dry()) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int dummy;
  *s = reinterpret_cast<cudaStream_t>(&dummy);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
struct CUevent_st {
  int unused;
};
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st{0};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { return e ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaEventQuery(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidValue; }

// ---- cuBLAS: a plain column-major SGEMM ------------------------------------------------------
struct cublasContext {
  int unused;
};
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext{0};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* a, int lda, const float* b, int ldb, const float* beta,
                           float* c, int ldc) {
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) ||
      ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (emu::dry()) return CUBLAS_STATUS_SUCCESS;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double acc = 0;
      for (int l = 0; l < k; ++l) {
        const float av = ta == CUBLAS_OP_N ? a[i + size_t(l) * lda] : a[l + size_t(i) * lda];
        const float bv = tb == CUBLAS_OP_N ? b[l + size_t(j) * ldb] : b[j + size_t(l) * ldb];
        acc += double(av) * bv;
      }
      float& out = c[i + size_t(j) * ldc];
      out = float(*alpha * acc + (*beta == 0.f ? 0.0 : double(*beta) * out));
    }
  return CUBLAS_STATUS_SUCCESS;
}

// ---- cuBLASLt: descriptors as plain structs, Matmul as a checked SGEMM -----------------------
#include <cublasLt.h>

#include "core/dtype.hpp"

struct cublasLtContext {
  int unused;
};
struct cublasLtMatmulDescOpaque_t {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
struct cublasLtMatrixLayoutOpaque_t {
  uint64_t rows, cols;
  int64_t ld;
  cudaDataType_t type;
};
struct cublasLtMatmulPreferenceOpaque_t {
  uint32_t align_a = 256, align_b = 256, align_c = 256, align_d = 256;
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext{0};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t, cudaDataType_t) {
  *d = new cublasLtMatmulDescOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes) {
  if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
  (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = *static_cast<const cublasOperation_t*>(buf);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (ld < int64_t(rows) || ld < 1) return CUBLAS_STATUS_INVALID_VALUE;  // column-major: ld >= rows
  *l = new cublasLtMatrixLayoutOpaque_t{rows, cols, ld, type};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new cublasLtMatmulPreferenceOpaque_t{0};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t bytes) {
  uint32_t* field = attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES   ? &p->align_a
                    : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES ? &p->align_b
                    : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES ? &p->align_c
                    : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES ? &p->align_d
                                                                         : nullptr;
  if (field) {
    if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    *field = *static_cast<const uint32_t*>(buf);
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t* results, int* returned) {
  // Like the real heuristic for some shapes: no bf16 algorithm when A or B is
  // under 4-byte aligned. An algorithm found for the preferred alignments
  // requires them; cublasLtMatmul refuses operands less aligned than that.
  const bool offered = a->type != CUDA_R_16BF || (p->align_a >= 4 && p->align_b >= 4);
  *returned = requested > 0 && offered ? 1 : 0;
  if (requested > 0) {
    results[0] = cublasLtMatmulHeuristicResult_t{};
    results[0].algo.data[0] = p->align_a;
    results[0].algo.data[1] = p->align_b;
    results[0].algo.data[2] = std::min(p->align_c, p->align_d);
  }
  return CUBLAS_STATUS_SUCCESS;
}
namespace {
// A column-major span of `cols` columns of `rows` values with leading dimension ld, widened to fp32.
const float* widen(const void* p, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld,
                   std::vector<float>& w) {
  if (type == CUDA_R_32F) return static_cast<const float*>(p);
  const size_t span = size_t(cols - 1) * ld + rows;
  const auto* bits = static_cast<const uint16_t*>(p);
  w.resize(span);
  for (size_t i = 0; i < span; ++i) w[i] = llamaft::bf16_to_f32(bits[i]);
  return w.data();
}

// C = alpha op(A) op(B) + beta C in fp32 over widened operands; a bf16 C is
// widened first and rounded back (nearest even) after.
cublasStatus_t typed_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const void* A,
                          cudaDataType_t at, int lda, const void* B, cudaDataType_t bt, int ldb, float beta, void* C,
                          cudaDataType_t ct, int ldc) {
  if (at != bt || (at != CUDA_R_32F && at != CUDA_R_16BF) || (ct != CUDA_R_32F && ct != CUDA_R_16BF))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m <= 0 || n <= 0) return CUBLAS_STATUS_SUCCESS;
  if (emu::dry()) return CUBLAS_STATUS_SUCCESS;
  std::vector<float> wa, wb, wc;
  const float* fa = widen(A, at, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, wa);
  const float* fb = widen(B, bt, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, wb);
  float* fc = ct == CUDA_R_32F ? static_cast<float*>(C) : const_cast<float*>(widen(C, ct, m, n, ldc, wc));
  const cublasStatus_t st = cublasSgemm(nullptr, ta, tb, m, n, k, &alpha, fa, lda, fb, ldb, &beta, fc, ldc);
  if (st == CUBLAS_STATUS_SUCCESS && ct == CUDA_R_16BF) {
    auto* bits = static_cast<uint16_t*>(C);
    for (size_t j = 0; j < size_t(n); ++j)
      for (size_t i = 0; i < size_t(m); ++i) bits[j * ldc + i] = llamaft::f32_to_bf16(fc[j * ldc + i]);
  }
  return st;
}
}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* a, cudaDataType_t a_type, int lda, const void* b,
                            cudaDataType_t b_type, int ldb, const void* beta, void* c, cudaDataType_t c_type, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_INVALID_VALUE;
  return typed_gemm(ta, tb, m, n, k, *static_cast<const float*>(alpha), a, a_type, lda, b, b_type, ldb,
                    *static_cast<const float*>(beta), c, c_type, ldc);
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t a, const void* B, cublasLtMatrixLayout_t b, const void* beta,
                              const void* C, cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t) {
  const auto aligned = [](const void* ptr, uint64_t need) {
    return need == 0 || reinterpret_cast<uintptr_t>(ptr) % need == 0;
  };
  if (algo && (!aligned(A, algo->data[0]) || !aligned(B, algo->data[1]) || !aligned(D, algo->data[2]))) {
    std::fprintf(stderr, "cuda_emu: cublasLtMatmul: an operand is less aligned than the algorithm was chosen for "
                 "(A %p needs %llu, B %p needs %llu, D %p needs %llu)\n", A, (unsigned long long)algo->data[0], B,
                 (unsigned long long)algo->data[1], D, (unsigned long long)algo->data[2]);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const uint64_t m = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ka = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
  const uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols, n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
  if (ka != kb || c->rows != m || c->cols != n || dl->rows != m || dl->cols != n || C != D || c->ld != dl->ld ||
      c->type != dl->type)
    return CUBLAS_STATUS_INVALID_VALUE;
  return typed_gemm(d->ta, d->tb, int(m), int(n), int(ka), *static_cast<const float*>(alpha), A, a->type,
                    int(a->ld), B, b->type, int(b->ld), *static_cast<const float*>(beta), D, c->type, int(c->ld));
}
