#include "binary.hpp"

#include "parallel.hpp"

#include <cmath>

namespace crossent {
namespace {

// coef * value, with 0 * (+-inf or NaN) = 0 where coef is 0.
inline double zero_times(double coef, double value) { return coef == 0.0 ? 0.0 : coef * value; }

// log sigma(x) = min(x, 0) - log1p(e^(-|x|))
inline double log_sigmoid(double x) { return std::fmin(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

// log(e^a + e^b) = max + log1p(e^(-|a - b|)), as numpy.logaddexp (equal arguments: a + log 2).
inline double logaddexp(double a, double b) {
  if (a == b) return a + 0.69314718055994530942;
  const double d = a - b;
  if (d > 0) return a + std::log1p(std::exp(-d));
  if (d <= 0) return b + std::log1p(std::exp(d));
  return d;  // NaN
}

}  // namespace

// t' = t (1-eps) + eps/2 and 1 - t' = (1-t)(1-eps) + eps/2 (formed without cancellation);
//   l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)],
//   dl/dx = w [(1-t') sigma(x) - pw t' sigma(-x)]  (log(1 - sigma(x)) = log sigma(-x)).
template <typename T>
void sigmoid_bce(const T* logits, int64_t n, const double* targets, const double* weight,
                 const double* pos_weight, double eps, double* loss_out, T* grad,
                 double grad_scale) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(logits[i]);
    const double t = targets[i] * (1.0 - eps) + eps / 2.0;
    const double omt = (1.0 - targets[i]) * (1.0 - eps) + eps / 2.0;
    const double pw = pos_weight ? pos_weight[i] : 1.0;
    const double w = weight ? weight[i] : 1.0;
    const double ls = log_sigmoid(x), lsn = log_sigmoid(-x);
    loss_out[i] = -w * (zero_times(pw * t, ls) + zero_times(omt, lsn));
    if (grad)
      grad[i] = static_cast<T>(w * (omt * std::exp(ls) - pw * t * std::exp(lsn)) * grad_scale);
  }
}

// l = -w [t log p + (1-t) log(1-p)], dl/dp = w [-t/p + (1-t)/(1-p)], exact: 0 log 0 = 0,
// and a zero weight zeroes its element even where a logarithm is infinite.
template <typename T>
void bce(const T* probs, int64_t n, const double* targets, const double* weight,
         double* loss_out, T* grad, double grad_scale) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const double p = static_cast<double>(probs[i]);
    const double t = targets[i];
    const double w = weight ? weight[i] : 1.0;
    const double log_p = std::log(p);
    const double log_1mp = std::log1p(-p);  // log(1 - p) without cancellation for small p
    loss_out[i] = -zero_times(w, zero_times(t, log_p) + zero_times(1.0 - t, log_1mp));
    if (grad)
      grad[i] = static_cast<T>(
          zero_times(w, zero_times(t, -1.0 / p) + zero_times(1.0 - t, 1.0 / (1.0 - p))) *
          grad_scale);
  }
}

// u = 1 - p_t, log u = logaddexp(log t + log sigma(-x), log(1-t) + log sigma(x)),
// alpha_t = alpha t + (1-alpha)(1-t), ce the binary cross-entropy:
//   l = alpha_t u^gamma ce,
//   dl/dx = alpha_t u^gamma [gamma (1-2t) exp(ls + lsn - log u) ce + sigma(x) - t].
template <typename T>
void sigmoid_focal(const T* logits, int64_t n, const double* targets, bool has_alpha,
                   double alpha, double gamma, double* loss_out, T* grad, double grad_scale) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(logits[i]);
    const double t = targets[i];
    const double ls = log_sigmoid(x), lsn = log_sigmoid(-x);
    const double ce = -(zero_times(t, ls) + zero_times(1.0 - t, lsn));
    const double log_u = logaddexp(std::log(t) + lsn, std::log1p(-t) + ls);
    const double u_gamma = gamma != 0.0 ? std::exp(gamma * log_u) : 1.0;
    const double alpha_t = has_alpha ? alpha * t + (1.0 - alpha) * (1.0 - t) : 1.0;
    loss_out[i] = alpha_t * u_gamma * ce;
    if (grad) {
      const double ratio = (1.0 - 2.0 * t) * std::exp(ls + lsn - log_u);
      grad[i] = static_cast<T>(alpha_t * u_gamma * (gamma * ratio * ce + std::exp(ls) - t) *
                               grad_scale);
    }
  }
}

template void sigmoid_bce<float>(const float*, int64_t, const double*, const double*,
                                 const double*, double, double*, float*, double);
template void sigmoid_bce<double>(const double*, int64_t, const double*, const double*,
                                  const double*, double, double*, double*, double);
template void bce<float>(const float*, int64_t, const double*, const double*, double*, float*,
                         double);
template void bce<double>(const double*, int64_t, const double*, const double*, double*,
                          double*, double);
template void sigmoid_focal<float>(const float*, int64_t, const double*, bool, double, double,
                                   double*, float*, double);
template void sigmoid_focal<double>(const double*, int64_t, const double*, bool, double, double,
                                    double*, double*, double);

}  // namespace crossent
