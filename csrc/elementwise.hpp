// The common frame of the element-wise kernels: blocks of kBlock elements (a SIMD loop each,
// summing in float64), split over the OpenMP threads in
// contiguous runs of blocks. The sum is deterministic for a given number of threads: each
// thread's run is summed in order and the runs are added in thread order.
#pragma once
#include <cstdint>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "level.hpp"
#include "parallel.hpp"

CROSSENT_LEVEL_BEGIN

constexpr int64_t kBlock = 2048;

// A lambda inlined into its caller's `#pragma omp simd` loop (GCC: [&](...) CROSSENT_INLINE_LAMBDA {}).
#define CROSSENT_INLINE_LAMBDA __attribute__((always_inline))

// What a block returns: the sum of its losses and the count of its inputs outside their domain
// (targets outside [0, 1], NaN included), which the caller reports.
struct BlockSums {
  double loss = 0.0;
  int64_t bad = 0;
  BlockSums& operator+=(const BlockSums& o) {
    loss += o.loss;
    bad += o.bad;
    return *this;
  }
};

// block(i0, i1) processes elements [i0, i1) and returns their BlockSums.
template <typename F>
BlockSums sum_blocks(int64_t n, F block) {
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  auto run = [&](int64_t b0, int64_t b1) {
    BlockSums s;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kBlock;
      s += block(i0, i0 + kBlock < n ? i0 + kBlock : n);
    }
    return s;
  };
#ifdef _OPENMP
  const int nt = omp_get_max_threads();
  if (nt > 1 && n >= kParallelMinElements) {
    Buffer<BlockSums> part(nt);
    for (int t = 0; t < nt; ++t) part[t] = BlockSums();
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), used = omp_get_num_threads();
      part[t] = run(n_blocks * t / used, n_blocks * (t + 1) / used);
    }
    BlockSums total;
    for (int t = 0; t < nt; ++t) total += part[t];
    return total;
  }
#endif
  return run(0, n_blocks);
}

// The number of entries of v[i0:i1] outside [0, 1] (NaN included); v is in cache after the
// block's pass, so the count costs a compare per element.
template <typename TT>
int64_t count_outside_unit(const TT* __restrict v, int64_t i0, int64_t i1) {
  TT bad = 0;
#pragma omp simd reduction(+ : bad)
  for (int64_t i = i0; i < i1; ++i) bad += (v[i] >= TT(0) && v[i] <= TT(1)) ? TT(0) : TT(1);
  return static_cast<int64_t>(bad);
}

// +inf of T, for every kernel's infinite results (log 0, a zero probability on a target).
template <typename T>
constexpr T kInfinity = std::numeric_limits<T>::infinity();

// coef * value, with 0 * (+-inf or NaN) = 0 where coef is 0 (a select: vectorises).
template <typename T>
inline T zero_times(T coef, T value) {
  return coef == T(0) ? T(0) : coef * value;
}

// A target t >= 0 (of type TT) in the logits' type T: rounded, except that a nonzero value
// never becomes 0, so it keeps the zero-times-infinity rule (a nonzero target on an infinite
// log-probability still costs inf).
template <typename T, typename TT>
inline T narrow(TT t) {
  const T r = static_cast<T>(t);
  return (r == T(0) && t != TT(0)) ? std::numeric_limits<T>::denorm_min() : r;
}

// 1 - t in the wider of t's type and T (exact for t in [1/2, 1] by Sterbenz' lemma).
template <typename T, typename TT>
inline decltype(T() + TT()) one_minus(TT t, T) {
  using W = decltype(T() + TT());
  return W(1) - static_cast<W>(t);
}

CROSSENT_LEVEL_END
