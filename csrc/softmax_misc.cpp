#include "softmax_misc.hpp"

#include "parallel.hpp"
#include "row_scalar.hpp"

#include <cmath>
#include <cstring>
#include <limits>

namespace crossent {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// coef * value, with 0 * (+-inf or NaN) = 0 where coef is 0.
inline double zero_times(double coef, double value) { return coef == 0.0 ? 0.0 : coef * value; }

}  // namespace

// d l_n / d log_probs[n, j] = -w_y [j = y]. The loss is -w_y log_probs[n, y] as written
// (0 * -inf is NaN here, as in the reference: nll takes no masked classes).
template <typename T>
void nll(const T* log_probs, int64_t n_rows, int64_t C, const int64_t* labels,
         const double* weight, bool has_ignore, int64_t ignore_index, double* loss_out, T* grad,
         double grad_scale) {
#pragma omp parallel for schedule(static) if (n_rows * C >= kParallelMinElements)
  for (int64_t n = 0; n < n_rows; ++n) {
    const int64_t y = labels[n];
    const bool ignored = has_ignore && y == ignore_index;
    const double wy = ignored ? 0.0 : (weight ? weight[y] : 1.0);
    loss_out[n] = ignored ? 0.0 : -wy * static_cast<double>(log_probs[n * C + y]);
    if (grad) {
      T* g = grad + n * C;
      std::memset(g, 0, static_cast<size_t>(C) * sizeof(T));
      if (!ignored) g[y] = static_cast<T>(-wy * grad_scale);
    }
  }
}

// With lp = log p_y, p_y = e^lp, u = 1 - p_y = -expm1(lp) (no cancellation):
//   l = -alpha_y u^gamma lp,
//   d l / d z_j = alpha_y (p_j - [j = y]) u^gamma (1 - gamma p_y lp / u),
// where lp / u -> -1 as u -> 0 (so gamma < 1 stays finite). Every class masked: lp = -inf.
template <typename T>
void softmax_focal(const T* logits, int64_t n_rows, int64_t C, const int64_t* labels,
                   const double* alpha, double gamma, bool has_ignore, int64_t ignore_index,
                   double* loss_out, T* grad, double grad_scale) {
#pragma omp parallel for schedule(static) if (n_rows * C >= kParallelMinElements)
  for (int64_t n = 0; n < n_rows; ++n) {
    const T* x = logits + n * C;
    T* g = grad ? grad + n * C : nullptr;
    const int64_t y = labels[n];
    if (has_ignore && y == ignore_index) {
      loss_out[n] = 0.0;
      if (g) std::memset(g, 0, static_cast<size_t>(C) * sizeof(T));
      continue;
    }
    double shift, log_s;
    shifted_log_sum_exp(x, C, &shift, &log_s);
    const double lse = shift + log_s;
    // log p_c = (z_c - m) - log s: shifted, no digits lost to large logits
    const double lp = lse == -kInf ? -kInf : (static_cast<double>(x[y]) - shift) - log_s;
    const double p_y = std::exp(lp);
    const double u = -std::expm1(lp);
    const double u_gamma = std::pow(u, gamma);  // 0^0 = 1
    const double a_y = alpha ? alpha[y] : 1.0;
    loss_out[n] = zero_times(a_y * u_gamma, -lp);
    if (!g) continue;
    const double r = u == 0.0 ? -1.0 : lp / u;
    const double coef = a_y * (u_gamma * (1.0 - gamma * zero_times(p_y, r)));
    for (int64_t c = 0; c < C; ++c) {
      double d = std::exp((static_cast<double>(x[c]) - shift) - log_s);
      if (c == y) d -= 1.0;
      g[c] = static_cast<T>(zero_times(coef, d) * grad_scale);
    }
  }
}

template void nll<float>(const float*, int64_t, int64_t, const int64_t*, const double*, bool,
                         int64_t, double*, float*, double);
template void nll<double>(const double*, int64_t, int64_t, const int64_t*, const double*, bool,
                          int64_t, double*, double*, double);
template void softmax_focal<float>(const float*, int64_t, int64_t, const int64_t*, const double*,
                                   double, bool, int64_t, double*, float*, double);
template void softmax_focal<double>(const double*, int64_t, int64_t, const int64_t*,
                                    const double*, double, bool, int64_t, double*, double*,
                                    double);

}  // namespace crossent
