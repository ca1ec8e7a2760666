#include "binary.hpp"

#include <cmath>

#include "elementwise.hpp"
#include "simd_math.hpp"

CROSSENT_LEVEL_BEGIN
namespace {

// ------------------------------------------------------------------ scalar float64 reference
// One element in float64 with libm, the formulas of crossent/_reference.py: the path for
// weighted calls and for the rare blocks the SIMD path hands back (see sigmoid_focal).

// log sigma(x) = min(x, 0) - log1p(e^(-|x|))
inline double log_sigmoid_ref(double x) {
  return std::fmin(x, 0.0) - std::log1p(std::exp(-std::fabs(x)));
}

// log(e^a + e^b) = max + log1p(e^(-|a - b|)), as numpy.logaddexp (equal arguments: a + log 2).
inline double logaddexp(double a, double b) {
  if (a == b) return a + 0.69314718055994530942;
  const double d = a - b;
  if (d > 0) return a + std::log1p(std::exp(-d));
  if (d <= 0) return b + std::log1p(std::exp(d));
  return d;  // NaN
}

// t' = t (1-eps) + eps/2 and 1 - t' = (1-t)(1-eps) + eps/2 (formed without cancellation);
//   l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)],
//   dl/dx = w [(1-t') sigma(x) - pw t' sigma(-x)]  (log(1 - sigma(x)) = log sigma(-x)).
inline double sigmoid_bce_ref(double x, double t0, double w, double pw, double eps,
                              double* grad) {
  const double t = t0 * (1.0 - eps) + eps / 2.0;
  const double omt = (1.0 - t0) * (1.0 - eps) + eps / 2.0;
  const double ls = log_sigmoid_ref(x), lsn = log_sigmoid_ref(-x);
  *grad = w * (omt * std::exp(ls) - pw * t * std::exp(lsn));
  return -w * (zero_times(pw * t, ls) + zero_times(omt, lsn));
}

// l = -w [t log p + (1-t) log(1-p)], dl/dp = w [-t/p + (1-t)/(1-p)], exact: 0 log 0 = 0,
// and a zero weight zeroes its element even where a logarithm is infinite.
inline double bce_ref(double p, double t, double w, double* grad) {
  const double log_p = std::log(p);
  const double log_1mp = std::log1p(-p);  // log(1 - p) without cancellation for small p
  *grad = zero_times(w, (t == 0.0 ? 0.0 : -t / p) + (t == 1.0 ? 0.0 : (1.0 - t) / (1.0 - p)));
  return -zero_times(w, zero_times(t, log_p) + zero_times(1.0 - t, log_1mp));
}

// u = 1 - p_t, log u = logaddexp(log t + log sigma(-x), log(1-t) + log sigma(x)),
// alpha_t = alpha t + (1-alpha)(1-t), ce the binary cross-entropy:
//   l = alpha_t u^gamma ce,
//   dl/dx = alpha_t u^gamma [gamma r ce + sigma(x) - t],  r = (du/dx) / u
//         = (1-2t) sigma(x) sigma(-x) / u = (1-2t) exp(ls + lsn - log u).
// |r| <= max(sigma(x), sigma(-x)) <= 1, and u = 0 only where t is 0 or 1 and the logit is
// infinite on the target's side, where ce = 0: the term r ce is then 0 (its limit), not
// exp(-inf - -inf) * 0 = NaN.
inline double sigmoid_focal_ref(double x, double t, bool has_alpha, double alpha, double gamma,
                                double* grad) {
  const double ls = log_sigmoid_ref(x), lsn = log_sigmoid_ref(-x);
  const double ce = -(zero_times(t, ls) + zero_times(1.0 - t, lsn));
  const double log_u = logaddexp(std::log(t) + lsn, std::log1p(-t) + ls);
  const double u_gamma = gamma != 0.0 ? std::exp(gamma * log_u) : 1.0;
  const double alpha_t = has_alpha ? alpha * t + (1.0 - alpha) * (1.0 - t) : 1.0;
  const double r_ce =
      log_u == -kInfinity<double> ? 0.0
                                                        : (1.0 - 2.0 * t) * std::exp(ls + lsn - log_u) * ce;
  *grad = alpha_t * u_gamma * (zero_times(gamma, r_ce) + std::exp(ls) - t);
  return alpha_t * u_gamma * ce;
}

// Every element through a scalar reference `ref(i, &grad) -> loss`, summed in float64.
template <typename T, typename F>
double scalar_block(int64_t i0, int64_t i1, double* loss_out, T* grad, double grad_scale, F ref) {
  double s = 0.0;
  for (int64_t i = i0; i < i1; ++i) {
    double g;
    const double l = ref(i, &g);
    if (loss_out) loss_out[i] = l;
    if (grad) grad[i] = static_cast<T>(g * grad_scale);
    s += l;
  }
  return s;
}

// ------------------------------------------------------------------ SIMD paths (type T)
// Each path runs one block in T (float for float inputs) and returns its BlockSums: the losses
// summed in T over chunks of kSumChunk elements (a vector of partial sums, each over
// kSumChunk / lanes terms: at most 64, relative error < 64 ulp of T at worst) and the chunk
// sums in float64, and the count of targets (and probabilities) outside [0, 1] counted in the
// same loop. A path that assumes something of the block (hard targets, moderate logits) also
// counts the elements that break the assumption into `miss`; the caller then recomputes the
// block by a general path, which overwrites every output of the block.
constexpr int64_t kSumChunk = 256;

struct SimdSums {
  double loss = 0.0;
  int64_t bad = 0;
  int64_t miss = 0;
};

// 1 where v lies outside [0, 1] (NaN included), else 0.
template <typename T, typename V>
CROSSENT_INLINE T outside_unit(V v) {
  return (v >= V(0) && v <= V(1)) ? T(0) : T(1);
}

// The sum of a chunk's losses, by one out-of-line loop per type: the same order of additions
// whichever outputs the caller writes (the vectoriser may treat the callers' loops differently).
template <typename T>
__attribute__((noinline)) T sum_chunk(const T* __restrict v, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// Runs body(i, bad, miss) -> the loss of element i over [i0, i1) in `#pragma omp simd`
// chunks; body adds to bad and miss.
template <typename T, typename Body>
CROSSENT_INLINE SimdSums chunked(int64_t i0, int64_t i1, Body body) {
  SimdSums out;
  T bad = 0, miss = 0;
  alignas(64) T losses[kSumChunk];
  for (int64_t c0 = i0; c0 < i1; c0 += kSumChunk) {
    const int64_t c1 = c0 + kSumChunk < i1 ? c0 + kSumChunk : i1;
#pragma omp simd reduction(+ : bad, miss)
    for (int64_t i = c0; i < c1; ++i) losses[i - c0] = body(i, bad, miss);
    out.loss += static_cast<double>(sum_chunk(losses, c1 - c0));
  }
  out.bad = static_cast<int64_t>(bad);
  out.miss = static_cast<int64_t>(miss);
  return out;
}

// The shared terms of x: e = e^(-|x|), L = log(1 + e); log sigma(x) = min(x, 0) - L and
// log sigma(-x) = -max(x, 0) - L. With the gradient also sigma(x), sigma(-x) from one division
// (sigma(|x|) = 1/(1+e), sigma(-|x|) = e/(1+e)).
template <typename T>
struct SigmoidParts {
  T ls, lsn, sp, sn;
};

template <typename T, bool Sigmas>
CROSSENT_INLINE SigmoidParts<T> sigmoid_parts(T x) {
  const T e = exp_nonpos(x < T(0) ? x : -x);
  const T L = vlog1p_unit(e);
  SigmoidParts<T> s{(x < T(0) ? x : T(0)) - L, -(x > T(0) ? x : T(0)) - L, T(0), T(0)};
  if (Sigmas) {
    const T r = T(1) / (T(1) + e);
    const bool pos = x >= T(0);
    s.sp = pos ? r : e * r;
    s.sn = pos ? e * r : r;
  }
  return s;
}

template <typename T, typename TT, bool LossOut, bool Grad>
SimdSums sigmoid_bce_simd(const T* __restrict x, const TT* __restrict t, int64_t i0, int64_t i1,
                          T eps, double* __restrict loss_out, T* __restrict grad, T scale) {
  const T a = T(1) - eps, b = eps / T(2);
  return chunked<T>(i0, i1, [&](int64_t i, T& bad, T& miss) CROSSENT_INLINE_LAMBDA {
    bad += outside_unit<T>(t[i]);
    const T tp = narrow<T>(t[i]) * a + b, omt = narrow<T>(one_minus(t[i], T())) * a + b;
    const SigmoidParts<T> s = sigmoid_parts<T, Grad>(x[i]);
    const T l = -(zero_times(tp, s.ls) + zero_times(omt, s.lsn));
    if (LossOut) loss_out[i] = static_cast<double>(l);
    if (Grad) grad[i] = (omt * s.sp - tp * s.sn) * scale;
    return l;
  });
}

// -log p and -log(1-p) with libm-free log and log1p, and the two reciprocals of the gradient.
template <typename T, typename TT, bool LossOut, bool Grad>
SimdSums bce_simd(const T* __restrict p, const TT* __restrict t, int64_t i0, int64_t i1,
                  double* __restrict loss_out, T* __restrict grad, T scale) {
  return chunked<T>(i0, i1, [&](int64_t i, T& bad, T& miss) CROSSENT_INLINE_LAMBDA {
    const T pi = p[i], ti = narrow<T>(t[i]), omt = narrow<T>(one_minus(t[i], T()));
    bad += outside_unit<T>(t[i]) + outside_unit<T>(pi);
    const T l = -(zero_times(ti, vlog(pi)) + zero_times(omt, vlog1p(-pi)));
    if (LossOut) loss_out[i] = static_cast<double>(l);
    // -(t s)/p, not t * (-1/p) * s: 1/p overflows for subnormal p where t/p need not, and
    // t/p overflows where the scaled gradient t s/p need not
    if (Grad) grad[i] = (ti == T(0) ? T(0) : -(ti * scale) / pi) + (omt == T(0) ? T(0) : (omt * scale) / (T(1) - pi));
    return l;
  });
}

// Hard targets t in {0, 1} (others counted in miss): one logarithm, of the probability of the
// target's class v = t ? p : 1 - p. 1 - p is exact for p >= 1/2 (Sterbenz) and otherwise off
// by its rounding d = (1 - p) - fl(1 - p); log(1 - p) = log(v) + log1p(d / v) = log(v) + d / v
// to first order, as in log1p (Goldberg 1991).
//   l = -log v,  dl/dp = t ? -1/p : 1/(1-p) = -s / v  (s = +-1).
template <typename T, typename TT, bool LossOut, bool Grad>
SimdSums bce_hard_simd(const T* __restrict p, const TT* __restrict t, int64_t i0, int64_t i1,
                       double* __restrict loss_out, T* __restrict grad, T scale) {
  return chunked<T>(i0, i1, [&](int64_t i, T& bad, T& miss) CROSSENT_INLINE_LAMBDA {
    const T pi = p[i];
    const TT tv = t[i];
    bad += outside_unit<T>(tv) + outside_unit<T>(pi);
    miss += (tv == TT(0) || tv == TT(1)) ? T(0) : T(1);
    const bool pos = tv == TT(1);
    const T q = T(1) - pi;
    const T v = pos ? pi : q;
    const T d = pos ? T(0) : (T(1) - q) - pi;  // exact: q's rounding error, 0 where q is exact
    const T l = -(vlog(v) + (d == T(0) ? T(0) : d / v));
    if (LossOut) loss_out[i] = static_cast<double>(l);
    if (Grad) grad[i] = (pos ? -scale : scale) / v;
    return l;
  });
}

// u = 1 - p_t = t sigma(-x) + (1-t) sigma(x) directly (two non-negative terms, no
// cancellation), u^gamma = exp(gamma log u) by the math layer's pow_unit.
// u is at least min(sigma(x), sigma(-x)) >= e^(-|x|)/2, a normal number unless |x| exceeds
// kLarge; a logit beyond (or NaN) is counted in miss and the caller recomputes the block in
// float64.
template <typename T>
constexpr T kLargeLogit = sizeof(T) == 4 ? T(80) : T(700);

template <typename T, typename TT, bool LossOut, bool Grad>
SimdSums sigmoid_focal_simd(const T* __restrict x, const TT* __restrict t, int64_t i0, int64_t i1,
                            T a_pos, T a_neg, T gamma, double* __restrict loss_out,
                            T* __restrict grad, T scale) {
  return chunked<T>(i0, i1, [&](int64_t i, T& bad, T& miss) CROSSENT_INLINE_LAMBDA {
    const T xi = x[i];
    bad += outside_unit<T>(t[i]);
    miss += (xi < kLargeLogit<T> && xi > -kLargeLogit<T>) ? T(0) : T(1);
    const T ti = narrow<T>(t[i]), omt = narrow<T>(one_minus(t[i], T()));
    const SigmoidParts<T> s = sigmoid_parts<T, true>(xi);
    const T ce = -(zero_times(ti, s.ls) + zero_times(omt, s.lsn));
    const T u = ti * s.sn + omt * s.sp;
    const T ug = vpow_unit(u, gamma);
    const T at = a_pos * ti + a_neg * omt;  // alpha_t (a_pos = a_neg = 1: no balancing)
    const T l = at * ug * ce;
    if (LossOut) loss_out[i] = static_cast<double>(l);
    if (Grad) {
      const T r = (T(1) - T(2) * ti) * s.sp * s.sn / u;
      grad[i] = at * ug * (zero_times(gamma, r * ce) + s.sp - ti) * scale;
    }
    return l;
  });
}

// Hard targets t in {0, 1} (others, and logits beyond kLarge or NaN, counted in miss): with
// t = 1, p_t = sigma(x) and u = sigma(-x); with t = 0 the reverse. So log p_t and log u are the
// two log-sigmoids (no logarithm of u), ce = -log p_t, u^gamma = exp(gamma log u), and the
// terms of the gradient (see sigmoid_focal_ref) have no division and no cancellation:
//   r = (1-2t) sigma(x) sigma(-x) / u = t ? -sigma(x) : sigma(-x),
//   sigma(x) - t = t ? -sigma(-x) : sigma(x).
template <typename T, typename TT, bool LossOut, bool Grad>
SimdSums sigmoid_focal_hard_simd(const T* __restrict x, const TT* __restrict t, int64_t i0,
                                 int64_t i1, T a_pos, T a_neg, T gamma,
                                 double* __restrict loss_out, T* __restrict grad, T scale) {
  return chunked<T>(i0, i1, [&](int64_t i, T& bad, T& miss) CROSSENT_INLINE_LAMBDA {
    const T xi = x[i];
    const TT tv = t[i];
    bad += outside_unit<T>(tv);
    miss += ((tv == TT(0) || tv == TT(1)) && xi < kLargeLogit<T> && xi > -kLargeLogit<T>) ? T(0) : T(1);
    const bool pos = tv == TT(1);
    const SigmoidParts<T> s = sigmoid_parts<T, Grad>(xi);
    const T ce = -(pos ? s.ls : s.lsn);
    const T ug = exp_nonpos(gamma * (pos ? s.lsn : s.ls));  // u^gamma = exp(gamma log u)
    const T at = pos ? a_pos : a_neg;
    const T l = at * ug * ce;
    if (LossOut) loss_out[i] = static_cast<double>(l);
    if (Grad) {
      const T r = pos ? -s.sp : s.sn;
      const T d = pos ? -s.sn : s.sp;
      grad[i] = at * ug * (gamma * r * ce + d) * scale;
    }
    return l;
  });
}

// Runs a SIMD block instantiation chosen by (loss_out given, grad given).
#define CROSSENT_DISPATCH_OUTPUTS(FN, ...)                                       \
  (loss_out ? (grad ? FN<T, TT, true, true>(__VA_ARGS__)                         \
                    : FN<T, TT, true, false>(__VA_ARGS__))                       \
            : (grad ? FN<T, TT, false, true>(__VA_ARGS__)                        \
                    : FN<T, TT, false, false>(__VA_ARGS__)))

}  // namespace

// Each kernel: the blocks' losses summed, and *n_bad = the count of targets (and, for bce,
// probabilities) outside [0, 1] — checked in the same pass; the caller raises when it is not 0.
template <typename T, typename TT>
double sigmoid_bce(const T* x, int64_t n, const TT* t, const BinaryOptions& opt,
                   double* loss_out, T* grad, double grad_scale, int64_t* n_bad) {
  const T eps = static_cast<T>(opt.label_smoothing), scale = static_cast<T>(grad_scale);
  const bool weighted = opt.weight || opt.pos_weight;
  const BlockSums sums = sum_blocks(n, [&](int64_t i0, int64_t i1) {
    BlockSums b;
    if (weighted) {
      b.loss = scalar_block(i0, i1, loss_out, grad, grad_scale, [&](int64_t i, double* g) {
        return sigmoid_bce_ref(static_cast<double>(x[i]), static_cast<double>(t[i]),
                               opt.weight ? opt.weight[i] : 1.0,
                               opt.pos_weight ? opt.pos_weight[i] : 1.0, opt.label_smoothing, g);
      });
      b.bad = count_outside_unit(t, i0, i1);
      return b;
    }
    const SimdSums s =
        CROSSENT_DISPATCH_OUTPUTS(sigmoid_bce_simd, x, t, i0, i1, eps, loss_out, grad, scale);
    b.loss = s.loss;
    b.bad = s.bad;
    return b;
  });
  *n_bad = sums.bad;
  return sums.loss;
}

template <typename T, typename TT>
double bce(const T* p, int64_t n, const TT* t, const BinaryOptions& opt, double* loss_out,
           T* grad, double grad_scale, int64_t* n_bad) {
  const T scale = static_cast<T>(grad_scale);
  const BlockSums sums = sum_blocks(n, [&](int64_t i0, int64_t i1) {
    BlockSums b;
    if (opt.weight) {
      b.loss = scalar_block(i0, i1, loss_out, grad, grad_scale, [&](int64_t i, double* g) {
        return bce_ref(static_cast<double>(p[i]), static_cast<double>(t[i]), opt.weight[i], g);
      });
      b.bad = count_outside_unit(t, i0, i1) + count_outside_unit(p, i0, i1);
      return b;
    }
    SimdSums s = CROSSENT_DISPATCH_OUTPUTS(bce_hard_simd, p, t, i0, i1, loss_out, grad, scale);
    if (s.miss) s = CROSSENT_DISPATCH_OUTPUTS(bce_simd, p, t, i0, i1, loss_out, grad, scale);
    b.loss = s.loss;
    b.bad = s.bad;
    return b;
  });
  *n_bad = sums.bad;
  return sums.loss;
}

template <typename T, typename TT>
double sigmoid_focal(const T* x, int64_t n, const TT* t, const BinaryOptions& opt,
                     double* loss_out, T* grad, double grad_scale, int64_t* n_bad) {
  const T a_pos = opt.has_alpha ? static_cast<T>(opt.alpha) : T(1);
  const T a_neg = opt.has_alpha ? static_cast<T>(1.0 - opt.alpha) : T(1);
  const T gamma = static_cast<T>(opt.gamma), scale = static_cast<T>(grad_scale);
  const BlockSums sums = sum_blocks(n, [&](int64_t i0, int64_t i1) {
    BlockSums b;
    SimdSums s = CROSSENT_DISPATCH_OUTPUTS(sigmoid_focal_hard_simd, x, t, i0, i1, a_pos, a_neg,
                                           gamma, loss_out, grad, scale);
    if (s.miss)
      s = CROSSENT_DISPATCH_OUTPUTS(sigmoid_focal_simd, x, t, i0, i1, a_pos, a_neg, gamma,
                                    loss_out, grad, scale);
    if (s.miss)
      s.loss = scalar_block(i0, i1, loss_out, grad, grad_scale, [&](int64_t i, double* g) {
        return sigmoid_focal_ref(static_cast<double>(x[i]), static_cast<double>(t[i]),
                                 opt.has_alpha, opt.alpha, opt.gamma, g);
      });
    b.loss = s.loss;
    b.bad = s.bad;
    return b;
  });
  *n_bad = sums.bad;
  return sums.loss;
}

#define CROSSENT_INSTANTIATE(T, TT)                                                        \
  template double sigmoid_bce<T, TT>(const T*, int64_t, const TT*, const BinaryOptions&, \
                                     double*, T*, double, int64_t*);                     \
  template double bce<T, TT>(const T*, int64_t, const TT*, const BinaryOptions&, double*, \
                             T*, double, int64_t*);                                      \
  template double sigmoid_focal<T, TT>(const T*, int64_t, const TT*, const BinaryOptions&, \
                                       double*, T*, double, int64_t*);
CROSSENT_INSTANTIATE(float, float)
CROSSENT_INSTANTIATE(float, double)
CROSSENT_INSTANTIATE(double, float)
CROSSENT_INSTANTIATE(double, double)

CROSSENT_LEVEL_END
