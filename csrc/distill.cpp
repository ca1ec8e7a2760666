#include "distill.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "parallel.hpp"
#include "simd_math.hpp"

// The row function is compiled for AVX-512, AVX2 and the baseline, chosen at load time (as the
// softmax cross-entropy rows are).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(CROSSENT_NO_CLONES)
#define CROSSENT_DISTILL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CROSSENT_DISTILL_CLONES
#endif

namespace crossent {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(x) for x in [1, 2] (all this file needs), branch-free so that it vectorises:
// x = 2^k m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(z) = 2 sum_n z^(2n+1) / (2n+1),
// z = (m - 1) / (m + 1), |z| <= 0.1716: terms to n = 11 leave |z|^24 / 25 < 1e-19.
CROSSENT_INLINE double log_1_2(double x) {
  const uint64_t u = double_to_bits(x);
  // the biased exponent as a double, by the magic-number trick (no int64 -> double instruction)
  const double biased = bits_to_double(0x4330000000000000ULL | (u >> 52)) - 0x1p52;
  double m = bits_to_double((u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  const double k = biased - 1023.0 + (big ? 1.0 : 0.0);
  const double z = (m - 1.0) / (m + 1.0), z2 = z * z;
  double p = 1.0 / 23.0;
  p = p * z2 + 1.0 / 21.0;
  p = p * z2 + 1.0 / 19.0;
  p = p * z2 + 1.0 / 17.0;
  p = p * z2 + 1.0 / 15.0;
  p = p * z2 + 1.0 / 13.0;
  p = p * z2 + 1.0 / 11.0;
  p = p * z2 + 1.0 / 9.0;
  p = p * z2 + 1.0 / 7.0;
  p = p * z2 + 1.0 / 5.0;
  p = p * z2 + 1.0 / 3.0;
  p = p * z2 + 1.0;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 32 significant bits: k ln2_hi exact
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  return k * kLn2Hi + (2.0 * z * p + k * kLn2Lo);
}

// log(e^u + e^v) = hi + log(1 + e^(lo - hi)), hi = max(u, v); both -inf gives -inf.
CROSSENT_INLINE double log_add_exp(double u, double v) {
  const double hi = u > v ? u : v;
  const double lo = u > v ? v : u;
  const double l = hi + log_1_2(1.0 + exp_d(hi == -kInf ? -kInf : lo - hi));
  return hi == -kInf ? -kInf : l;
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
CROSSENT_DISTILL_CLONES void divergence_row(const T* x, const T* y, int64_t C, int64_t label,
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
  // the label's logits, read before the gradient (which may alias x) is written
  const double x_label = hard ? static_cast<double>(x[label]) : 0.0;
  const double y_label = hard ? static_cast<double>(y[label]) : 0.0;
  const double ce = hard ? lx + (mx - x_label) : 0.0;

  const Divergence kind = opt.kind;
  const double beta = opt.beta, log_beta = std::log(beta), log_1mbeta = std::log1p(-beta);
  // log m_c = log(beta p_c + (1-beta) q_c) = logaddexp(log beta + a_c, log(1-beta) + b_c)
  // The reverse KL and KL(q || m) are sum_c q_c r_c; their gradients need r_j - sum_c q_c r_c,
  // which cancels when r is large where q is near 1. So r is centred on r* = r at the
  // student's top class (sum_c q_c = 1): kq = sum_c q_c (r_c - r*), r_j - K = (r_j - r*) - kq.
  double r_star = 0.0;
  if (kind != Divergence::kForwardKL) {
    int64_t k = 0;
    while (static_cast<double>(x[k]) != mx) ++k;
    const double b = (mx * inv_t - ms) - ls;
    const double a = (static_cast<double>(y[k]) * inv_t - mt) - lt;
    r_star = kind == Divergence::kReverseKL ? b - a : b - log_add_exp(log_beta + a, log_1mbeta + b);
    if (!std::isfinite(r_star)) r_star = 0.0;
  }
  double value = 0.0, kq = 0.0;
  // gradient coefficients: (1 - h) / T * scale for the divergence, h * scale for the hard term
  const double cd = (1.0 - h) * inv_t * grad_scale, ch = h * grad_scale;
  const bool grad_now = g && kind == Divergence::kForwardKL;
  if (kind == Divergence::kForwardKL) {
    // KL(p || q) = sum_c p_c (a_c - b_c);  d/dx_j = (q_j - p_j) / T. A class the teacher
    // masks costs nothing; one only the student masks costs inf (p_c > 0 even where it
    // underflows).
    if (!grad_now) {
#pragma omp simd reduction(+ : value)
      for (int64_t c = 0; c < C; ++c) {
        const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
        const double b = (xc * inv_t - ms) - ls;
        const double a = (yc * inv_t - mt) - lt;
        const double term = fast_exp(a) * (a - b);
        value += yc == -kInf ? 0.0 : (xc == -kInf ? kInf : term);
      }
    } else {
#pragma omp simd reduction(+ : value)
      for (int64_t c = 0; c < C; ++c) {
        const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
        const double b = (xc * inv_t - ms) - ls;
        const double a = (yc * inv_t - mt) - lt;
        const double p = fast_exp(a), q = fast_exp(b);
        const double term = p * (a - b);
        value += yc == -kInf ? 0.0 : (xc == -kInf ? kInf : term);
        // q - p is finite, so a zero cd gives 0; the hard term's softmax of the raw logits is
        // q itself at T = 1 ((x - max x) - log s = b there), and ch = 0 without a hard term
        g[c] = static_cast<T>(cd * (q - p) + ch * fast_exp((xc - mx) - lx));
      }
      if (hard) {  // the label's own entry: d + h (q_y - 1), formed again with the -1
        const double xc = x_label, yc = y_label;
        const double b = (xc * inv_t - ms) - ls, a = (yc * inv_t - mt) - lt;
        const double q = fast_exp(b);
        const double d = cd == 0.0 ? 0.0 : cd * (q - fast_exp(a));
        const double qx = own_ce_lse ? fast_exp((xc - mx) - lx) : q;
        g[label] = static_cast<T>(d + ch * (qx - 1.0));
      }
    }
  } else if (kind == Divergence::kReverseKL) {
    // KL(q || p) = sum_c q_c r_c with r_c = b_c - a_c
#pragma omp simd reduction(+ : kq)
    for (int64_t c = 0; c < C; ++c) {
      const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
      const double b = (xc * inv_t - ms) - ls;
      const double a = (yc * inv_t - mt) - lt;
      const double q = fast_exp(b);
      const double r = (b - a) - r_star;
      const double tq = q * r;
      kq += xc == -kInf ? 0.0 : (yc == -kInf ? kInf : tq);
      scratch[c] = r;
    }
    value = r_star + kq;
  } else {
    // m = beta p + (1-beta) q; JSD = beta sum_c p_c (a_c - log m_c) + (1-beta) sum_c q_c r_c,
    // r_c = b_c - log m_c
    double vp = 0.0;
#pragma omp simd reduction(+ : vp, kq)
    for (int64_t c = 0; c < C; ++c) {
      const double xc = static_cast<double>(x[c]), yc = static_cast<double>(y[c]);
      const double b = (xc * inv_t - ms) - ls;
      const double a = (yc * inv_t - mt) - lt;
      const double p = fast_exp(a), q = fast_exp(b);
      const double lm = log_add_exp(log_beta + a, log_1mbeta + b);
      const double r = (b - lm) - r_star;
      const double tp = p * (a - lm), tq = q * r;
      vp += yc == -kInf ? 0.0 : tp;  // a masked side has no mass: its term is 0
      kq += xc == -kInf ? 0.0 : tq;
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
    const double wq = w * q * (scratch[c] - kq);
    const double dq = xc == -kInf ? 0.0 : wq;  // a masked logit is constant
    const double d = cd == 0.0 ? 0.0 : cd * dq;  // h = 1: the divergence (maybe inf) weighs 0
    g[c] = static_cast<T>(d + ch * fast_exp((xc - mx) - lx));
  }
  if (hard) {  // the label's own entry, formed again with the -1 of the one-hot target
    const double xc = x_label;
    const double q = fast_exp((xc * inv_t - ms) - ls);
    const double wq = w * q * (scratch[label] - kq);
    const double d = cd == 0.0 || xc == -kInf ? 0.0 : cd * wq;
    const double qx = own_ce_lse ? fast_exp((xc - mx) - lx) : q;
    g[label] = static_cast<T>(d + ch * (qx - 1.0));
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
