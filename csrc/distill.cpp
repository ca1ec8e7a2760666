#include "distill.hpp"

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel.hpp"
#include "simd_math.hpp"

namespace crossent {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(e^u + e^v) = max + log1p(e^-|u - v|); both -inf gives -inf.
inline double log_add_exp(double u, double v) {
  const double hi = u > v ? u : v;
  if (hi == -kInf) return -kInf;
  const double lo = u > v ? v : u;
  return hi + std::log1p(std::exp(lo - hi));
}

// One row. Passes over the (cache-resident) row pair:
//  1. the maxima of the logits x and the target logits y (and NaN / +inf detection);
//  2. the two log-sum-exps of x/T and y/T, shifted by the maxima (and of x, for the hard
//     cross-entropy at T != 1);
//  3. the value, from a_c = log p_c and b_c = log q_c (each formed against its own shift so
//     that large logits lose no digits); the forward KL's gradient in the same pass;
//  4. for the reverse KL and the JSD, whose gradient needs the row's value: the gradient,
//     from r_c kept in `scratch` by pass 3.
template <typename T>
void divergence_row(const T* x, const T* y, int64_t C, int64_t label,
                    const DivergenceOptions& opt, double* loss, T* g, double grad_scale,
                    double* scratch) {
  const double inv_t = 1.0 / opt.temperature;
  const double h = opt.hard_weight;
  const bool hard = h > 0.0;
  double mx = -kInf, my = -kInf;
  int nan_seen = 0;
#pragma omp simd reduction(max : mx, my) reduction(| : nan_seen)
  for (int64_t c = 0; c < C; ++c) {
    const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
    mx = xc > mx ? xc : mx;
    my = yc > my ? yc : my;
    nan_seen |= (xc != xc) | (yc != yc);
  }
  // max(x_c / T) = max(x_c) / T: scaling by 1/T > 0 and rounding are monotone
  const double ms = mx * inv_t, mt = my * inv_t;
  if (nan_seen || !std::isfinite(ms) || !std::isfinite(mt)) {
    *loss = std::nan("");
    if (g)
      for (int64_t c = 0; c < C; ++c) g[c] = static_cast<T>(std::nan(""));
    return;
  }
  const bool own_ce_lse = hard && opt.temperature != 1.0;
  double ss = 0.0, st = 0.0, sx = 0.0;
#pragma omp simd reduction(+ : ss, st)
  for (int64_t c = 0; c < C; ++c) {
    ss += fast_exp(static_cast<double>(x[c]) * inv_t - ms);
    st += fast_exp(static_cast<double>(y[c]) * inv_t - mt);
  }
  if (own_ce_lse) {
#pragma omp simd reduction(+ : sx)
    for (int64_t c = 0; c < C; ++c) sx += fast_exp(static_cast<double>(x[c]) - mx);
  }
  const double ls = std::log(ss), lt = std::log(st);
  const double lx = own_ce_lse ? std::log(sx) : ls;  // at T = 1 the hard term's lse is the student's
  // hard cross-entropy of the raw logits: lse(x) - x_y = log s_x + (max x - x_y)
  const double ce = hard ? lx + (mx - static_cast<double>(x[label])) : 0.0;

  const Divergence kind = opt.kind;
  const double beta = opt.beta, log_beta = std::log(beta), log_1mbeta = std::log1p(-beta);
  // log m_c = log(beta p_c + (1-beta) q_c) while that sum is a normal number, else
  // log(e^(log beta + a_c) + e^(log(1-beta) + b_c)) (no underflow to -inf)
  auto log_mix = [&](double a, double b, double p, double q) {
    const double mix = beta * p + (1.0 - beta) * q;
    return mix >= DBL_MIN ? std::log(mix) : log_add_exp(log_beta + a, log_1mbeta + b);
  };
  // The reverse KL and KL(q || m) are sum_c q_c r_c; their gradients need r_j - sum_c q_c r_c,
  // which cancels when r is large where q is near 1. So r is centred on r* = r at the
  // student's top class (sum_c q_c = 1): kq = sum_c q_c (r_c - r*), r_j - K = (r_j - r*) - kq.
  double r_star = 0.0;
  if (kind != Divergence::kForwardKL) {
    int64_t k = 0;
    while (static_cast<double>(x[k]) != mx) ++k;
    const double b = (mx * inv_t - ms) - ls;
    const double a = (static_cast<double>(y[k]) * inv_t - mt) - lt;
    r_star = kind == Divergence::kReverseKL ? b - a : b - log_mix(a, b, fast_exp(a), fast_exp(b));
    if (!std::isfinite(r_star)) r_star = 0.0;
  }
  double value = 0.0, kq = 0.0;
  // gradient coefficients: (1 - h) / T * scale for the divergence, h * scale for the hard term
  const double cd = (1.0 - h) * inv_t * grad_scale, ch = h * grad_scale;
  const bool grad_now = g && kind == Divergence::kForwardKL;
  if (kind == Divergence::kForwardKL) {
    // KL(p || q) = sum_c p_c (a_c - b_c);  d/dx_j = (q_j - p_j) / T
#pragma omp simd reduction(+ : value)
    for (int64_t c = 0; c < C; ++c) {
      const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
      const double b = (xc * inv_t - ms) - ls;
      const double a = (yc * inv_t - mt) - lt;
      const double p = fast_exp(a), q = fast_exp(b);
      // a class the teacher masks costs nothing; one only the student masks costs inf (p_c > 0
      // even where it underflows)
      value += yc == -kInf ? 0.0 : (xc == -kInf ? kInf : p * (a - b));
      if (grad_now) {
        const double d = cd == 0.0 ? 0.0 : cd * (q - p);
        const double qx = own_ce_lse ? fast_exp((xc - mx) - lx) : q;
        const double e = ch == 0.0 ? 0.0 : ch * (qx - (c == label ? 1.0 : 0.0));
        g[c] = static_cast<T>(d + e);
      }
    }
  } else if (kind == Divergence::kReverseKL) {
    // KL(q || p) = sum_c q_c r_c with r_c = b_c - a_c
    for (int64_t c = 0; c < C; ++c) {
      const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
      const double b = (xc * inv_t - ms) - ls;
      const double a = (yc * inv_t - mt) - lt;
      const double q = fast_exp(b);
      const double r = (b - a) - r_star;
      kq += xc == -kInf ? 0.0 : (yc == -kInf ? kInf : q * r);
      scratch[c] = r;
    }
    value = r_star + kq;
  } else {
    // m = beta p + (1-beta) q; JSD = beta sum_c p_c (a_c - log m_c) + (1-beta) sum_c q_c r_c,
    // r_c = b_c - log m_c
    double vp = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
      const double b = (xc * inv_t - ms) - ls;
      const double a = (yc * inv_t - mt) - lt;
      const double p = fast_exp(a), q = fast_exp(b);
      const double lm = log_mix(a, b, p, q);
      const double r = (b - lm) - r_star;
      vp += yc == -kInf ? 0.0 : p * (a - lm);  // a masked side has no mass: its term is 0
      kq += xc == -kInf ? 0.0 : q * r;
      scratch[c] = r;
    }
    value = beta * vp + (1.0 - beta) * (r_star + kq);
  }
  // loss = (1 - h) D + h CE, a zero weight times an infinite part being 0
  *loss = (h == 1.0 ? 0.0 : (1.0 - h) * value) + (hard ? h * ce : 0.0);
  if (!g || grad_now) return;
  // reverse KL: d/dx_j = q_j (r_j - KL) / T.  JSD: d JSD / d q_c = (1-beta) r_c (the mixture's
  // own terms sum to 0), so through the softmax d/dx_j = (1-beta) q_j (r_j - KL(q || m)) / T.
  const double w = kind == Divergence::kReverseKL ? 1.0 : 1.0 - beta;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const double xc = static_cast<double>(x[c]);
    const double q = fast_exp((xc * inv_t - ms) - ls);
    const double dq = xc == -kInf ? 0.0 : w * q * (scratch[c] - kq);  // a masked logit is constant
    const double d = cd == 0.0 ? 0.0 : cd * dq;
    const double qx = own_ce_lse ? fast_exp((xc - mx) - lx) : q;
    const double e = ch == 0.0 ? 0.0 : ch * (qx - (c == label ? 1.0 : 0.0));
    g[c] = static_cast<T>(d + e);
  }
}

}  // namespace

template <typename T>
void softmax_divergence(const T* logits, const T* target_logits, int64_t n_rows, int64_t C,
                        const DivergenceOptions& opt, double* loss_out, T* grad,
                        double grad_scale) {
  const bool need_scratch = opt.kind != Divergence::kForwardKL;  // r_c, kept by pass 3
#pragma omp parallel if (n_rows * C >= kParallelMinElements)
  {
    std::vector<double> scratch(need_scratch ? static_cast<size_t>(C) : 0);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < n_rows; ++n) {
      T* g = grad ? grad + n * C : nullptr;
      if (opt.where && !opt.where[n]) {
        loss_out[n] = 0.0;
        if (g)
          for (int64_t c = 0; c < C; ++c) g[c] = T(0);
        continue;
      }
      const int64_t label = opt.labels ? opt.labels[n] : -1;
      divergence_row<T>(logits + n * C, target_logits + n * C, C, label, opt, loss_out + n, g,
                        grad_scale, scratch.data());
    }
  }
}

template void softmax_divergence<float>(const float*, const float*, int64_t, int64_t,
                                        const DivergenceOptions&, double*, float*, double);
template void softmax_divergence<double>(const double*, const double*, int64_t, int64_t,
                                         const DivergenceOptions&, double*, double*, double);

}  // namespace crossent
