// The kernel table of this translation unit's SIMD level (CROSSENT_LEVEL), and the math layer's
// element-wise evaluation for its tests.
#include "binary.hpp"
#include "kernel_table.hpp"
#include "measures.hpp"
#include "score.hpp"
#include "simd_math.hpp"
#include "softmax_ce.hpp"
#include "softmax_misc.hpp"

CROSSENT_LEVEL_BEGIN
namespace {

template <typename T, typename F>
void apply(F f, const T* __restrict x, T* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = f(x[i]);
}

template <typename T>
void math(int function, const T* x, T param, T* out, int64_t n) {
  switch (function) {
    case 0: return apply([](T v) { return fast_exp(v); }, x, out, n);
    case 1: return apply([](T v) { return exp_nonpos(v); }, x, out, n);
    case 2: return apply([](T v) { return vlog(v); }, x, out, n);
    case 3: return apply([](T v) { return vlog1p(v); }, x, out, n);
    case 4: return apply([](T v) { return vlog_sigmoid(v); }, x, out, n);
    case 5: return apply([](T v) { return vsoftplus(v); }, x, out, n);
    case 6: return apply([](T v) { return vtanh(v); }, x, out, n);
    case 7: return apply([param](T v) { return vpow_unit(v, param); }, x, out, n);
    case 8: return apply([param](T v) { return vpow1m(v, param); }, x, out, n);
    default: return apply([](T v) { return vlog_pos(v); }, x, out, n);
  }
}

template <typename T, typename TT>
DenseTargetKernels<T, TT> dense_target_kernels() {
  return {&softmax_ce_dense<T, TT>, &sigmoid_bce<T, TT>, &bce<T, TT>, &sigmoid_focal<T, TT>};
}

template <typename T>
TypedKernels<T> typed_kernels() {
  return {&softmax_ce_index<T>,
          &nll<T>,
          &softmax_focal<T>,
          &normalize_rows<T>,
          &measure_rows<T>,
          &math<T>,
          &score_slices<T, int32_t>,
          &score_slices<T, int64_t>,
          dense_target_kernels<T, float>(),
          dense_target_kernels<T, double>()};
}

}  // namespace
CROSSENT_LEVEL_END

#define CROSSENT_STR2(x) #x
#define CROSSENT_STR(x) CROSSENT_STR2(x)

namespace crossent {
namespace CROSSENT_LEVEL {
const KernelTable& table() {
  static const KernelTable t{CROSSENT_STR(CROSSENT_LEVEL), typed_kernels<float>(),
                             typed_kernels<double>()};
  return t;
}
}  // namespace CROSSENT_LEVEL
}  // namespace crossent
