#!/usr/bin/env bash
# Builds the CUDA kernels, the CUDA backend and tests/cuda/*.cpp for the CPU
# emulator (cuda_emu.hpp) and runs the GPU tests on the CPU, with the threads
# of each block scheduled in forward and then in reverse order.
#   tests/cuda/emu/run_emu.sh [BUILD_DIR] [-- gtest args]
# LLAMAFT_EMU_BUILD_ONLY=1 builds $BUILD_DIR/cuda_tests_emu and runs nothing.
# Needs g++, GTest, OpenBLAS (OpenMP flavour) and Eigen, as the main build.
# The model-level tests (test_cuda_model.cpp) also compile the model, FSDP,
# the optimizer and batching from src/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/build-emu}
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
mkdir -p "$out/kernels" "$out/obj"

python3 "$here/emu_transform.py" "$root/kernels" "$out/kernels"

blas_inc=/usr/include/$(gcc -dumpmachine)/openblas-openmp
blas_lib=/usr/lib/$(gcc -dumpmachine)/openblas-openmp
flags=(-std=c++17 -O2 -g -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas
       -I"$here" -I"$out/kernels" -I"$root/src" -I"$blas_inc" -isystem /usr/include/eigen3)

sources=("$out"/kernels/*.cu "$root"/src/backend/cuda/*.cpp "$root"/tests/cuda/*.cpp "$here/cuda_emu.cpp"
         "$root"/src/backend/cpu/*.cpp "$root/src/backend/backend.cpp" "$root/src/quant/quant.cpp"
         "$root/src/core/error.cpp" "$root/src/core/util.cpp"
         "$root"/src/model/{llama,llama_config,param_layout,resident_params}.cpp "$root/src/unit/flat_unit.cpp" "$root/src/parallel/fsdp.cpp"
         "$root/src/optim/optimizer.cpp" "$root"/src/data/{token_dataset,prepared_dataset}.cpp)
# NCCL has no emulator: its tests need real GPUs.
for i in "${!sources[@]}"; do [[ "${sources[$i]}" == *nccl* ]] && unset 'sources[i]'; done
sources=("${sources[@]}")
# Objects are reused only while no header changed since the last build (the
# per-file check below sees sources, not what they include).
stamp=$out/obj/.headers
if [[ ! -f "$stamp" ]] || [[ -n "$(find "$root/src" "$root/kernels" "$root/tests/cuda" \( -name '*.hpp' -o -name '*.cuh' \
      -o -name '*.h' \) -newer "$stamp" -print -quit)" ]]; then
  rm -f "$out"/obj/*.o
fi
touch "$stamp"
compile() {  # src -> obj, only when the source or an emulator file is newer
  local src=$1 obj=$2; shift 2
  if [[ ! -f "$obj" || "$src" -nt "$obj" || "$here/cuda_emu.hpp" -nt "$obj" ]]; then
    local lang=(); [[ "$src" == *.cu ]] && lang=(-x c++ -include cuda_emu.hpp)
    g++ "$@" "${lang[@]}" -c "$src" -o "$obj"
  fi
}
export -f compile
objs=()
pairs=()
for src in "${sources[@]}"; do
  obj="$out/obj/$(echo "${src#"$root"/}" | tr '/' '_').o"
  [[ "$src" == "$out"/* ]] && obj="$out/obj/emu_$(basename "$src").o"
  objs+=("$obj")
  pairs+=("$src" "$obj")
done
printf '%s\0' "${pairs[@]}" | xargs -0 -n2 -P2 bash -c 'compile "$0" "$1" '"$(printf '%q ' "${flags[@]}")"

g++ -fopenmp -o "$out/cuda_tests_emu" "${objs[@]}" -L"$blas_lib" -Wl,-rpath,"$blas_lib" -lopenblas -ldnnl \
    -lgtest_main -lgtest -pthread

[[ "${LLAMAFT_EMU_BUILD_ONLY:-0}" == 1 ]] && exit 0  # bench/roofline.py needs only the binary

for order in forward reverse; do
  echo "== thread order: $order"
  args=("$@")
  # The step counters do not depend on the thread order: count them once.
  [[ $order == reverse && $# -eq 0 ]] && args=(--gtest_filter='-CudaStepCounters.*')
  LLAMAFT_EMU_ORDER=$order OMP_NUM_THREADS=2 "$out/cuda_tests_emu" "${args[@]}"
done

# The whole suite (CI): the step counters of llama3.2-1b at its real size, in
# dry mode (nothing runs), against the budgets, and through the roofline.
if [[ $# -eq 0 ]]; then
  echo "== llama3.2-1b at seq 2048, micro-batch 4, dry: step counters and the modelled roofline"
  LLAMAFT_EMU_DRY=1 LLAMAFT_STEP_COUNTS_OUT="$out/llama3.2-1b_counts.json" "$out/cuda_tests_emu" \
    --gtest_filter=StepCountsAtSize.Dump --gtest_brief=1
  python3 "$root/tests/gpu/check_roofline.py" --counters "$out/llama3.2-1b_counts.json"
fi
