#!/usr/bin/env bash
# Builds llamaft with MPICH (Debian's mpich / libmpich-dev: mpicc.mpich,
# mpiexec.mpich, i.e. Hydra) next to the Open MPI build, and runs the MPI
# tests there (ctest -L mpi, one at a time); prints the wall time of the build
# and of the tests. The MPI comes from find_package(MPI) through
# MPI_C_COMPILER, as on a site with an MPICH-ABI MPI.
#
# Usage: scripts/mpich_check.sh [extra ctest arguments, e.g. -R mpi_faults]
#   LLAMAFT_MPICH_LABEL      the ctest label to run (default: mpi; scripts/test.sh
#                            runs mpich, the tests of tests/mpi and tests/mpi_unit)
#   LLAMAFT_MPICH_BUILD_DIR  build folder (default: <repo>/build-mpich)
#   LLAMAFT_MPICH_CC         MPICH's C compiler wrapper (default: mpicc.mpich)
#   LLAMAFT_MPICH_CXX        its C++ wrapper (default: mpicxx.mpich)
#   LLAMAFT_MPICH_EXEC       its launcher (default: mpiexec.mpich)
#   LLAMAFT_JOBS             parallel compile jobs (default: nproc)
# Exit status: ctest's (0 when every MPI test passed or was skipped).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LLAMAFT_MPICH_BUILD_DIR:-$repo/build-mpich}
cc=${LLAMAFT_MPICH_CC:-mpicc.mpich}
cxx=${LLAMAFT_MPICH_CXX:-mpicxx.mpich}
exe=${LLAMAFT_MPICH_EXEC:-mpiexec.mpich}
jobs=${LLAMAFT_JOBS:-$(nproc)}
for tool in "$cc" "$cxx" "$exe"; do
  command -v "$tool" >/dev/null || { echo "mpich_check: $tool not found (apt-get install mpich libmpich-dev)" >&2; exit 2; }
done
python=$repo/.venv-ref/bin/python
[ -x "$python" ] || python=/usr/bin/python3

t0=$(date +%s)
mkdir -p "$build"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMAFT_CUDA=OFF \
  -DMPI_C_COMPILER="$(command -v "$cc")" -DMPI_CXX_COMPILER="$(command -v "$cxx")" \
  -DMPIEXEC_EXECUTABLE="$(command -v "$exe")" -DLLAMAFT_PYTHON="$python" >"$build/configure.log" 2>&1 \
  || { tail -30 "$build/configure.log"; exit 1; }
grep -E "llamaft: (HDF5|tests launch)" "$build/configure.log" || true
# What `ctest -L mpi` runs: llamaft, the MPI unit binaries and the reference dumpers.
cmake --build "$build" -j "$jobs" --target llamaft mpi_unit_tests fsdp_bf16_units ref_dump quant_dump
t1=$(date +%s)
# The binary must link MPICH alone (an HDF5 or another library built against
# Open MPI would bring a second MPI library in).
if ldd "$build/llamaft" | grep -qi "libmpi\.so\|open-rte\|openmpi"; then
  echo "mpich_check: $build/llamaft links Open MPI:" >&2
  ldd "$build/llamaft" | grep -i mpi >&2
  exit 1
fi
ldd "$build/llamaft" | grep -i mpich || true

set +e
label=${LLAMAFT_MPICH_LABEL:-mpi}
(cd "$build" && ctest -L "$label" -j 1 --output-on-failure "$@")
rc=$?
t2=$(date +%s)
echo "mpich_check: build (configure + compile) $((t1 - t0)) s, ctest -L $label $((t2 - t1)) s, ctest exit $rc"
exit $rc
