// The count of kernel launches issued by kernels/ since the process started:
// LLAMAFT_LAUNCH_CHECK() adds one after every launch. Plain host code
// (the CUDA backend) reads it around each op to count launches per family.
#pragma once

#include <cstdint>

namespace llamaft::cuda {

void note_launch();
int64_t launches_issued();

}  // namespace llamaft::cuda
