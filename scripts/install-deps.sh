#!/usr/bin/env bash
# Installs everything llamaft's build, tests and demo need on Debian 12.
# Idempotent: runs apt-get only when a package is missing.
#   scripts/install-deps.sh           build + demo dependencies
#   scripts/install-deps.sh --tests   also the Python reference and tracker environments
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(
  build-essential cmake pkg-config git ccache
  openmpi-bin libopenmpi-dev
  libhdf5-dev hdf5-tools
  libboost-program-options-dev libeigen3-dev libgtest-dev nlohmann-json3-dev
  libsentencepiece-dev libpcre2-dev libopenblas-openmp-dev libdnnl-dev libyaml-dev
  python3 python3-venv python3-numpy python3-h5py python3-torch python3-sentencepiece python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi

# The tests also start a real one-node Slurm cluster.
if [ "${1:-}" = "--tests" ]; then
  # python3-crc32c: an independent CRC-32C for the checkpoint tests; MPICH:
  # the MPI suite runs a second time in an MPICH build (scripts/mpich_check.sh;
  # Debian keeps Open MPI as the default mpicc/mpirun).
  test_packages=(slurm-wlm munge python3-crc32c mpich libmpich-dev)
  missing=()
  for p in "${test_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    $sudo_cmd apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
  fi
  "$here/setup_python_env.sh"
  # The W&B and MLflow clients of the tracker tests (~35 s, ~245 MB; no torch).
  "$here/setup_tracker_env.sh"
fi
