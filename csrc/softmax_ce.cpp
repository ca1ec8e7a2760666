#include "softmax_ce.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace crossent {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Soft-capping z = s * tanh(x / s); -inf (a masked class) stays -inf.
inline double capped(double x, double softcap) {
  if (softcap == 0.0 || x == -kInf) return x;
  return softcap * std::tanh(x / softcap);
}

template <typename T>
void one_row(const T* x, int64_t C, int64_t y, const SoftmaxCEOptions& opt, double* loss,
             T* g, double grad_scale, std::vector<double>& z) {
  const double eps = opt.label_smoothing;
  const double* w = opt.weight;
  // Pass 1: capped logits and their maximum.
  double m = -kInf;
  for (int64_t c = 0; c < C; ++c) {
    const double zc = capped(static_cast<double>(x[c]), opt.softcap);
    z[c] = zc;
    if (zc > m) m = zc;
  }
  // Pass 2: s = sum_c exp(z_c - m) (NaN logits make s NaN, and NaN flows to the outputs),
  // and for the smoothing term W = sum_c w_c and D = sum_c w_c (m - z_c) over unmasked
  // classes: sum_c w_c (lse - z_c) = W (lse - m) + D, a sum of non-negative terms.
  const double shift = std::isfinite(m) ? m : 0.0;
  double s = 0.0, w_sum = 0.0, wdev_sum = 0.0;
  int64_t unmasked = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double zc = z[c];
    s += std::exp(zc - shift);
    if (eps > 0.0 && zc != -kInf) {
      const double wc = w ? w[c] : 1.0;
      ++unmasked;
      w_sum += wc;
      wdev_sum += wc * (shift - zc);
    }
  }
  // Every difference is taken against the shift first, so large logits lose no digits:
  // lse - z_c = log s + (shift - z_c).
  const double log_s = std::log(s);
  const double lse = shift + log_s;
  const double wy = w ? w[y] : 1.0;
  const double eps_c = unmasked > 0 ? eps / static_cast<double>(unmasked) : 0.0;
  // l = (1-eps) w_y (lse - z_y) + (eps/C') sum_c w_c (lse - z_c) + z_loss w_y lse^2
  // a zero coefficient times an infinite -log p_y (masked target) is 0, as in the reference
  const double cy = (1.0 - eps) * wy;
  double l = cy != 0.0 ? cy * (log_s + (shift - z[y])) : 0.0;
  if (eps > 0.0) l += eps_c * (w_sum * log_s + wdev_sum);
  if (opt.z_loss > 0.0) l += opt.z_loss * wy * lse * lse;
  if (m == -kInf) l = kInf;  // every class masked: the target has probability 0
  *loss = l;
  if (!g) return;
  // d l / d z_j = p_j A - (eps/C') w_j [j unmasked] - (1-eps) w_y [j = y],
  //   A = (1-eps) w_y + (eps/C') W + 2 z_loss w_y lse, p_j = exp(z_j - lse);
  // with soft-capping, d z_j / d x_j = 1 - tanh^2(x_j/s) = 1 - (z_j/s)^2.
  const double A = (1.0 - eps) * wy + eps_c * w_sum + 2.0 * opt.z_loss * wy * lse;
  for (int64_t c = 0; c < C; ++c) {
    const double zc = z[c];
    double d = std::exp((zc - shift) - log_s) * A;
    if (eps > 0.0 && zc != -kInf) d -= eps_c * (w ? w[c] : 1.0);
    if (c == y) d -= (1.0 - eps) * wy;
    if (opt.softcap != 0.0 && zc != -kInf) {
      const double t = zc / opt.softcap;
      d *= 1.0 - t * t;
    }
    g[c] = static_cast<T>(d * grad_scale);
  }
}

}  // namespace

template <typename T>
void softmax_ce_index(const T* logits, int64_t n_rows, int64_t n_classes, const int64_t* labels,
                      const SoftmaxCEOptions& opt, double* loss_out, T* grad, double grad_scale) {
#pragma omp parallel
  {
    std::vector<double> z(static_cast<size_t>(n_classes));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < n_rows; ++n) {
      const T* x = logits + n * n_classes;
      T* g = grad ? grad + n * n_classes : nullptr;
      const int64_t y = labels[n];
      if (opt.has_ignore && y == opt.ignore_index) {
        loss_out[n] = 0.0;
        if (g)
          for (int64_t c = 0; c < n_classes; ++c) g[c] = T(0);
        continue;
      }
      one_row(x, n_classes, y, opt, loss_out + n, g, grad_scale, z);
    }
  }
}

template void softmax_ce_index<float>(const float*, int64_t, int64_t, const int64_t*,
                                      const SoftmaxCEOptions&, double*, float*, double);
template void softmax_ce_index<double>(const double*, int64_t, int64_t, const int64_t*,
                                       const SoftmaxCEOptions&, double*, double*, double);

}  // namespace crossent
