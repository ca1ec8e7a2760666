// Element-wise binary losses over flat arrays of n elements. Specification:
// crossent/_reference.py. targets, weight and pos_weight are float64 arrays of n elements
// (weights may be nullptr for all ones); grad (if not nullptr) receives grad_scale * dl/dx.
#pragma once
#include <cstdint>

namespace crossent {

template <typename T>
void sigmoid_bce(const T* logits, int64_t n, const double* targets, const double* weight,
                 const double* pos_weight, double label_smoothing, double* loss_out, T* grad,
                 double grad_scale);

template <typename T>
void bce(const T* probs, int64_t n, const double* targets, const double* weight,
         double* loss_out, T* grad, double grad_scale);

// has_alpha false: no balancing (alpha_t = 1).
template <typename T>
void sigmoid_focal(const T* logits, int64_t n, const double* targets, bool has_alpha,
                   double alpha, double gamma, double* loss_out, T* grad, double grad_scale);

}  // namespace crossent
