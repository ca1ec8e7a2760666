#include "softmax_misc.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "elementwise.hpp"
#include "parallel.hpp"
#include "row_scalar.hpp"
#include "softmax_rows.hpp"

CROSSENT_LEVEL_BEGIN
namespace {


// The focal row's scalars from lp = log p_y: the loss -alpha_y u^gamma lp and the factor
// coef = alpha_y u^gamma (1 - gamma p_y lp / u) of d l / d z_j = coef (p_j - [j = y]), with
// u = 1 - p_y = -expm1(lp) (no cancellation) and lp / u -> -1 as u -> 0 (gamma < 1 stays
// finite). Every class masked: lp = -inf, p_y = 0.
inline double focal_scalars(double lp, double a_y, double gamma, double* coef) {
  const double p_y = std::exp(lp);
  const double u = -std::expm1(lp);
  const double u_gamma = std::pow(u, gamma);  // 0^0 = 1
  const double r = u == 0.0 ? -1.0 : lp / u;
  *coef = a_y * (u_gamma * (1.0 - gamma * zero_times(p_y, r)));
  return zero_times(a_y * u_gamma, -lp);
}

// A row whose maximum is not finite, in float64 as the reference.
template <typename T>
void focal_general_row(const T* x, int64_t C, int64_t y, double a_y, double gamma, double* loss,
                       T* g, double grad_scale) {
  double shift, log_s;
  shifted_log_sum_exp(x, C, &shift, &log_s);
  const double lse = shift + log_s;
  // log p_c = (z_c - m) - log s: shifted, no digits lost to large logits
  const double lp = lse == -kInfinity<double> ? -kInfinity<double> : (static_cast<double>(x[y]) - shift) - log_s;
  double coef;
  *loss = focal_scalars(lp, a_y, gamma, &coef);
  if (!g) return;
  for (int64_t c = 0; c < C; ++c) {
    double d = std::exp((static_cast<double>(x[c]) - shift) - log_s);
    if (c == y) d -= 1.0;
    g[c] = static_cast<T>(zero_times(coef, d) * grad_scale);
  }
}

// The focal epilogue for IndexRows: the class-index sweeps of softmax cross-entropy, then
// lp = log p_y = (z_y - m) - log s, the loss from focal_scalars, and the gradient
// d l / d z_j = coef (p_j - [j = y]) as RowGrad k = coef grad_scale / s, ga = coef grad_scale.
// A row whose maximum is not finite takes focal_general_row.
template <typename T>
struct FocalEpilogue {
  const T* x;
  T* g;
  const int64_t* labels;
  int64_t C;
  const double* alpha;
  double gamma;
  double* loss_out;
  double grad_scale;

  double w_y(int64_t) const { return 1.0; }  // alpha_y is in coef
  bool general_max(T m) const { return !std::isfinite(m); }
  bool finish(int64_t n, int64_t y, RowStats& st, RowGrad* r) const {
    if (!std::isfinite(st.m)) return false;
    const double log_s = std::log(st.s);
    double coef;
    loss_out[n] = focal_scalars((st.zy - st.m) - log_s, alpha ? alpha[y] : 1.0, gamma, &coef);
    r->m = st.m;
    r->k = coef * grad_scale / st.s;
    r->ga = coef * grad_scale;
    r->gb = 0.0;
    return true;
  }
  void general(int64_t n) const {
    const int64_t y = labels[n];
    focal_general_row(x + n * C, C, y, alpha ? alpha[y] : 1.0, gamma, loss_out + n,
                      g ? g + n * C : nullptr, grad_scale);
  }
};

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

template <typename T>
void softmax_focal(const T* logits, int64_t n_rows, int64_t C, const int64_t* labels,
                   const double* alpha, double gamma, bool has_ignore, int64_t ignore_index,
                   double* loss_out, T* grad, double grad_scale) {
  const FocalEpilogue<T> epi{logits, grad, labels, C, alpha, gamma, loss_out, grad_scale};
  with_flag(grad != nullptr, [&](auto has_g) {
    const IndexRows<FocalEpilogue<T>, false, false, false, has_g(), T> rows{
        epi, logits, grad, labels, C, nullptr, T(0), has_ignore, ignore_index, loss_out};
    run(rows, n_rows, C, static_cast<const T*>(grad) == logits);
  });
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

CROSSENT_LEVEL_END
