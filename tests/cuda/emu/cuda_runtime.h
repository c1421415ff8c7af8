// Fake <cuda_runtime.h> for the CPU emulator (see cuda_emu.hpp).
#pragma once
#include "cuda_emu.hpp"
