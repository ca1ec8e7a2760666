// Divergences between two models' softmax distributions, row by row (distillation).
// Specification: crossent/_reference.py (softmax_divergence). Compiled once per SIMD level
// (csrc/distill.cpp, like the kernels of kernel_table.hpp); softmax_divergence runs the copy of
// the level in use.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernel_table.hpp"

namespace crossent {

enum class Divergence : int { kForwardKL = 0, kReverseKL = 1, kJensenShannon = 2 };

struct DivergenceOptions {
  Divergence kind = Divergence::kForwardKL;
  double beta = 0.5;          // the teacher's weight in the JSD mixture, in (0, 1)
  double temperature = 1.0;   // both distributions are softmax(logits / temperature)
  double hard_weight = 0.0;   // weight of the hard-label cross-entropy (of the raw logits)
  const uint8_t* where = nullptr;   // [N] rows that count, or nullptr (all)
  const int64_t* labels = nullptr;  // [N] class indices for the hard term (hard_weight > 0)
};

// Per row n: loss_out[n] = (1 - h) D(p_n, q_n) + h CE(logits_n, labels_n), with
// p = softmax(target_logits / T) (teacher), q = softmax(logits / T) (student), D the chosen
// divergence; rows outside `where` give 0. grad (if not nullptr; it may alias logits) =
// grad_scale * d loss_out[n] / d logits[n]. A row holding NaN or +inf, or with every logit
// -inf on either side, gives NaN (value and gradient).
template <typename T>
using DivergenceRows = void (*)(const T* logits, const T* target_logits, int64_t n_rows,
                                int64_t n_classes, const DivergenceOptions& opt, double* loss_out,
                                T* grad, double grad_scale);

struct DivergenceKernels {
  DivergenceRows<float> f32;
  DivergenceRows<double> f64;
};

namespace baseline { const DivergenceKernels& divergence_kernels(); }
namespace avx2 { const DivergenceKernels& divergence_kernels(); }
namespace avx512 { const DivergenceKernels& divergence_kernels(); }

// The copy of the SIMD level in use (kernel_table.hpp's active()).
inline const DivergenceKernels& divergence_kernels() {
  const char* level = active().level;
  if (std::strcmp(level, "avx512") == 0) return avx512::divergence_kernels();
  if (std::strcmp(level, "avx2") == 0) return avx2::divergence_kernels();
  return baseline::divergence_kernels();
}

template <typename T>
void softmax_divergence(const T* logits, const T* target_logits, int64_t n_rows,
                        int64_t n_classes, const DivergenceOptions& opt, double* loss_out,
                        T* grad, double grad_scale) {
  const DivergenceKernels& k = divergence_kernels();
  if constexpr (std::is_same_v<T, float>)
    k.f32(logits, target_logits, n_rows, n_classes, opt, loss_out, grad, grad_scale);
  else
    k.f64(logits, target_logits, n_rows, n_classes, opt, loss_out, grad, grad_scale);
}

}  // namespace crossent
