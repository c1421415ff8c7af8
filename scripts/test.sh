#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, and runs
# every test through ctest, then the MPI suite again in an MPICH build.
# Extra arguments go to ctest (e.g. -L unit) and leave the MPICH run out.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" --tests
"$root/scripts/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# PMIx's munge plugin: once munged has died with its socket left in
# /run/munge, every Open MPI launch retried it for 2.3 s (mpirun -np 1 true:
# 2.32 s, 0.05 s with native). The tests' launches are local; the Slurm
# tests' own authentication (slurmctld, slurmd) still goes through munge.
export PMIX_MCA_psec=${PMIX_MCA_psec:-native}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cd "${LLAMAFT_BUILD_DIR:-$root/build}"
set +e
ctest --output-on-failure --timeout 900 "$@"
rc=$?
# The whole suite (no ctest arguments): the MPI suite a second time, built
# with MPICH and launched by its Hydra mpiexec (label mpich: tests/mpi and
# tests/mpi_unit). ccache serves that build every object that does not
# include <mpi.h>. LLAMAFT_MPICH_SUITE=0 leaves it out.
if [ $# -eq 0 ] && [ "${LLAMAFT_MPICH_SUITE:-1}" != 0 ]; then
  LLAMAFT_MPICH_LABEL=mpich "$root/scripts/mpich_check.sh" --timeout 900
  mpich_rc=$?
  [ "$rc" -ne 0 ] || rc=$mpich_rc
fi
exit "$rc"
