// When the kernels use OpenMP threads.
#pragma once
#include <cstdint>

namespace crossent {

// Below this many elements a call runs on the calling thread: waking a team costs more than the
// work, and on a small machine the team's spinning threads compete with the caller's own
// (BLAS, PyTorch) threads for the cores.
constexpr int64_t kParallelMinElements = int64_t(1) << 15;

}  // namespace crossent
