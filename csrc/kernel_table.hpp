// The kernels of one SIMD level as a table of function pointers, and the run-time choice of
// the level: the widest the CPU offers, or the one named by the environment variable
// CROSSENT_SIMD ("avx512", "avx2" or "baseline"; a level the CPU lacks is an error), or by
// set_simd_level. Every kernel signature lives here once; the kernels' own headers say what
// they compute.
#pragma once
#include <cstdint>
#include <string>

#include "options.hpp"

namespace crossent {

template <typename T, typename TT>
struct DenseTargetKernels {
  // Returns the count of targets outside [0, 1].
  int64_t (*softmax_ce_dense)(const T* logits, int64_t n_rows, int64_t n_classes,
                              const TT* targets, const SoftmaxCEOptions& opt, double* loss_out,
                              T* grad, double grad_scale);
  // Element-wise over n elements: returns the sum of the losses (float64); loss_out (may be
  // nullptr) receives each element's loss, grad (may be nullptr) grad_scale * dl/dx, *n_bad
  // the count of inputs outside [0, 1] (targets; and probabilities for bce).
  double (*sigmoid_bce)(const T* logits, int64_t n, const TT* targets, const BinaryOptions& opt,
                        double* loss_out, T* grad, double grad_scale, int64_t* n_bad);
  double (*bce)(const T* probs, int64_t n, const TT* targets, const BinaryOptions& opt,
                double* loss_out, T* grad, double grad_scale, int64_t* n_bad);
  double (*sigmoid_focal)(const T* logits, int64_t n, const TT* targets, const BinaryOptions& opt,
                          double* loss_out, T* grad, double grad_scale, int64_t* n_bad);
};

template <typename T>
struct TypedKernels {
  void (*softmax_ce_index)(const T* logits, int64_t n_rows, int64_t n_classes,
                           const int64_t* labels, const SoftmaxCEOptions& opt, double* loss_out,
                           T* grad, double grad_scale);
  void (*nll)(const T* log_probs, int64_t n_rows, int64_t n_classes, const int64_t* labels,
              const double* weight, bool has_ignore, int64_t ignore_index, double* loss_out,
              T* grad, double grad_scale);
  void (*softmax_focal)(const T* logits, int64_t n_rows, int64_t n_classes,
                        const int64_t* labels, const double* alpha, double gamma, bool has_ignore,
                        int64_t ignore_index, double* loss_out, T* grad, double grad_scale);
  void (*normalize_rows)(const T* x, int64_t n_rows, int64_t n_classes, double* lse_out, T* out,
                         bool log_space);
  // Measures of probability rows with their validation (measures.hpp): returns the count of
  // bad entries; kind 0 entropy, 1 cross-entropy, 2 KL, 3 JS.
  int64_t (*measure_rows)(int kind, const T* p, const T* q, int64_t n_rows, int64_t n_classes,
                          double* value, double* sum_p, double* sum_q);
  // The math layer element-wise (for its tests): out[i] = f(x[i]) (f(x[i], param) for the
  // powers), f numbered as kMathNames.
  void (*math)(int function, const T* x, T param, T* out, int64_t n);
  int64_t (*score_slices_i32)(const T* const* cols, int64_t C, int64_t m, const int32_t* codes,
                              const int64_t* code_class, const double* weights, double tol,
                              bool normalize, double log_clip, int64_t n_bins,
                              int64_t slice_rows, double* loss_out, double* states,
                              int64_t* invalid);
  int64_t (*score_slices_i64)(const T* const* cols, int64_t C, int64_t m, const int64_t* codes,
                              const int64_t* code_class, const double* weights, double tol,
                              bool normalize, double log_clip, int64_t n_bins,
                              int64_t slice_rows, double* loss_out, double* states,
                              int64_t* invalid);
  DenseTargetKernels<T, float> targets_f32;
  DenseTargetKernels<T, double> targets_f64;
};

struct KernelTable {
  const char* level;
  TypedKernels<float> f32;
  TypedKernels<double> f64;
};

// The functions of the math layer that `math` evaluates, in order.
constexpr const char* kMathNames[] = {"exp",         "exp_nonpos", "log",      "log1p",
                                      "log_sigmoid", "softplus",   "tanh",     "pow_unit",
                                      "pow1m",       "log_pos"};
constexpr int kMathCount = 10;

namespace baseline { const KernelTable& table(); }
namespace avx2 { const KernelTable& table(); }
namespace avx512 { const KernelTable& table(); }

// The levels this CPU can run, widest first.
std::string supported_levels();
// Select a level by name (throws std::invalid_argument for an unknown or unsupported name).
void set_simd_level(const std::string& name);
// The table in use (chosen on first use from CROSSENT_SIMD, or the widest level).
const KernelTable& active();

template <typename T>
const TypedKernels<T>& kernels_for();
template <>
inline const TypedKernels<float>& kernels_for<float>() { return active().f32; }
template <>
inline const TypedKernels<double>& kernels_for<double>() { return active().f64; }

}  // namespace crossent
