// The divergence rows of distill.hpp, compiled once per SIMD level (level.hpp). Computed in
// the inputs' type T (float32 rows in float32 vectors), every sum over a chunk of kChunk
// elements in T and the chunk sums in float64; the row's scalars (log-sums, r*, the label's
// entry) in float64.
#include "distill.hpp"

#include <cmath>
#include <limits>

#include "elementwise.hpp"
#include "level.hpp"
#include "parallel.hpp"
#include "simd_math.hpp"
#include "softmax_rows.hpp"

CROSSENT_LEVEL_BEGIN
namespace {


// The row's statistics from pass 1.
struct Stats {
  double mx, my;  // maxima of the student's logits x and the teacher's y
  double ls, lt;  // log sum_c exp((x_c - mx) / T), log sum_c exp((y_c - my) / T)
  double lx;      // log sum_c exp(x_c - mx) (the hard term's, at T != 1)
};

// Pass 1, one sweep: the two (three with `raw`) online log-sum-exps (Milakov & Gimelshein
// 2018). Per chunk of kChunk elements (in L1) the chunk maxima, then each running sum is
// rescaled when its maximum grows, s <- s exp((m_old - m_new) / T), and the chunk's exps
// exp((x_c - m) / T) <= 1 added. Differences are taken before the scaling by 1/T, so large
// logits lose no digits. Returns false for a row holding NaN or +inf, or all -inf on a side.
template <bool Raw, typename T>
bool row_stats(const T* __restrict x, const T* __restrict y, int64_t C, double inv_t,
               Stats* out) {
  const T it = static_cast<T>(inv_t);
  T mx = -kInfinity<T>, my = -kInfinity<T>;
  double ss = 0.0, st = 0.0, sx = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T cx = -kInfinity<T>, cy = -kInfinity<T>;
#pragma omp simd reduction(max : cx, cy)
    for (int64_t c = c0; c < c1; ++c) {
      cx = x[c] > cx ? x[c] : cx;
      cy = y[c] > cy ? y[c] : cy;
    }
    if (cx == kInfinity<T> || cy == kInfinity<T>) return false;
    if (cx > mx) {  // 0 while the maximum was -inf
      const double d = static_cast<double>(mx) - static_cast<double>(cx);
      ss *= std::exp(d * inv_t);
      if (Raw) sx *= std::exp(d);
      mx = cx;
    }
    if (cy > my) {
      st *= std::exp((static_cast<double>(my) - static_cast<double>(cy)) * inv_t);
      my = cy;
    }
    const T hx = mx == -kInfinity<T> ? T(0) : mx, hy = my == -kInfinity<T> ? T(0) : my;
    T ps = 0, pt = 0, px = 0;
    if (Raw) {
#pragma omp simd reduction(+ : ps, pt, px)
      for (int64_t c = c0; c < c1; ++c) {
        ps += exp_nonpos(static_cast<T>((x[c] - hx) * it));
        pt += exp_nonpos(static_cast<T>((y[c] - hy) * it));
        px += exp_nonpos(static_cast<T>(x[c] - hx));
      }
    } else {
#pragma omp simd reduction(+ : ps, pt)
      for (int64_t c = c0; c < c1; ++c) {
        ps += exp_nonpos(static_cast<T>((x[c] - hx) * it));
        pt += exp_nonpos(static_cast<T>((y[c] - hy) * it));
      }
    }
    ss += static_cast<double>(ps);
    st += static_cast<double>(pt);
    sx += static_cast<double>(px);
  }
  // NaN reaches the sums; an all -inf side leaves its maximum at -inf
  if (mx == -kInfinity<T> || my == -kInfinity<T> || !std::isfinite(ss) || !std::isfinite(st) || !std::isfinite(sx))
    return false;
  out->mx = static_cast<double>(mx);
  out->my = static_cast<double>(my);
  out->ls = std::log(ss);
  out->lt = std::log(st);
  out->lx = Raw ? std::log(sx) : out->ls;  // at T = 1 the hard term's lse is the student's
  return true;
}

// The per-row constants of pass 2, in T.
template <typename T>
struct Consts {
  T mx, my, it, ls, lt, lx;
  T lb, l1b, cb;  // log beta, log(1 - beta), log beta - log(1 - beta)
  T rc;           // r*, the centre of r (below)
  T cd, ch;       // gradient coefficients of the divergence's r-part and of the hard term
};

// The JSD's two log-ratios to the mixture m = beta p + (1-beta) q, from d = a_c - b_c
// (a = log p, b = log q), e = d + log beta - log(1 - beta) and L = log(1 + e^-|e|):
//   r = b - log m = -logaddexp(log beta + d, log(1-beta)) = -(max(e, 0) + log(1-beta) + L),
//   s = a - log m = -logaddexp(log beta, log(1-beta) - d) = -(max(-e, 0) + log beta + L);
// a masked student class (d = +inf) has s = -log beta, a masked teacher class r = -log(1-beta).
template <typename T>
CROSSENT_INLINE void jsd_parts(T d, T lb, T l1b, T cb, T* r, T* s) {
  const T e = d + cb;
  const T L = vlog1p_unit(exp_nonpos(-(e < T(0) ? -e : e)));
  *r = -((e > T(0) ? e : T(0)) + l1b + L);
  *s = -((e < T(0) ? -e : T(0)) + lb + L);
}

// Pass 2, one sweep: the value's sums, and with Grad the gradient in one more cheap sweep.
// a_c = log p_c = (y_c - my)/T - lt, b_c = log q_c = (x_c - mx)/T - ls.
//  forward KL: KL(p || q) = sum_c p_c (a_c - b_c); d/dx_j = (q_j - p_j) / T, written at once.
//  reverse KL: KL(q || p) = sum_c q_c r_c, r = b - a; d/dx_j = q_j (r_j - KL) / T.
//  JSD: beta sum_c p_c s_c + (1-beta) sum_c q_c r_c (jsd_parts); d JSD / d q_c = (1-beta) r_c
//    (the mixture's own terms sum to 0), so through the softmax d/dx_j = (1-beta) q_j (r_j -
//    KL(q || m)) / T.
// The last two need the row's K = sum_c q_c r_c: this sweep writes g_j = cd q_j (r_j - r*) +
// ch qx_j and q_j into `sq`, the next g_j -= cd K' q_j. r is centred on r*, its value at the
// student's top class (sum_c q_c = 1): K' = sum_c q_c (r_c - r*) is small where q is near one
// class, so nothing large cancels. A class the teacher masks costs nothing in KL(p || q); one
// only the student masks costs inf (p_c > 0 even where it underflows); the other way round in
// KL(q || p); the JSD's mixture keeps every term finite.
template <int Kind, bool Grad, bool Raw, typename T>
void value_sweep(const T* x, const T* y, T* g, T* __restrict sq, int64_t C, const Consts<T>& k,
                 double* sum_p, double* sum_q) {
  double vp = 0.0, vq = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T pp = 0, pq = 0;
#pragma omp simd reduction(+ : pp, pq)
    for (int64_t c = c0; c < c1; ++c) {
      const T xc = x[c], yc = y[c];  // read before g (which may be x) is written
      const T b = (xc - k.mx) * k.it - k.ls;
      const T a = (yc - k.my) * k.it - k.lt;
      const T q = exp_nonpos(b);
      const bool xm = xc == -kInfinity<T>, ym = yc == -kInfinity<T>;
      T gd;  // the divergence's part of the gradient, before cd
      if (Kind == 0) {
        const T p = exp_nonpos(a);
        pp += ym ? T(0) : (xm ? kInfinity<T> : p * (a - b));
        gd = q - p;
      } else if (Kind == 1) {
        const T r = (b - a) - k.rc;
        const T t = q * r;
        pq += xm ? T(0) : (ym ? kInfinity<T> : t);
        gd = xm ? T(0) : t;
      } else {
        const T p = exp_nonpos(a);
        T r, s;
        jsd_parts(a - b, k.lb, k.l1b, k.cb, &r, &s);
        const T t = q * (r - k.rc);
        pp += ym ? T(0) : p * s;
        pq += xm ? T(0) : t;
        gd = xm ? T(0) : t;
      }
      if (Grad) {
        // ch = 0 without a hard term; at T = 1 its softmax of the raw logits is q itself
        const T qx = Raw ? exp_nonpos(static_cast<T>((xc - k.mx) - k.lx)) : q;
        g[c] = (k.cd == T(0) ? T(0) : k.cd * gd) + k.ch * qx;  // h = 1: D (maybe inf) weighs 0
        if (Kind != 0) sq[c] = q;
      }
    }
    vp += static_cast<double>(pp);
    vq += static_cast<double>(pq);
  }
  *sum_p = vp;
  *sum_q = vq;
}

// g_j -= f q_j: the reverse KL's and the JSD's -cd K' q_j.
template <typename T>
void subtract_scaled(T* __restrict g, const T* __restrict sq, int64_t C, T f) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) g[c] -= f * sq[c];
}

template <int Kind, bool Raw, typename T>
void sweep(bool grad, const T* x, const T* y, T* g, T* sq, int64_t C, const Consts<T>& k,
           double* sum_p, double* sum_q) {
  if (grad)
    value_sweep<Kind, true, Raw>(x, y, g, sq, C, k, sum_p, sum_q);
  else
    value_sweep<Kind, false, Raw>(x, y, g, sq, C, k, sum_p, sum_q);
}

template <typename T>
void divergence_row(const T* x, const T* y, int64_t C, int64_t label,
                    const DivergenceOptions& opt, double* loss, T* g, double grad_scale,
                    T* sq) {
  const double inv_t = 1.0 / opt.temperature;
  const double h = opt.hard_weight;
  const bool hard = h > 0.0;
  const bool raw = hard && opt.temperature != 1.0;  // the hard term's own lse of the raw logits
  Stats st;
  if (!(raw ? row_stats<true>(x, y, C, inv_t, &st) : row_stats<false>(x, y, C, inv_t, &st))) {
    *loss = std::nan("");
    if (g)
      for (int64_t c = 0; c < C; ++c) g[c] = std::numeric_limits<T>::quiet_NaN();
    return;
  }
  const Divergence kind = opt.kind;
  const double beta = opt.beta, lb = std::log(beta), l1b = std::log1p(-beta);
  // the label's logits, read before the gradient (which may alias x) is written
  const double xl = hard ? static_cast<double>(x[label]) : 0.0;
  const double yl = hard ? static_cast<double>(y[label]) : 0.0;
  // hard cross-entropy of the raw logits: lse(x) - x_y = log s_x + (max x - x_y)
  const double ce = hard ? st.lx + (st.mx - xl) : 0.0;
  // r* (reverse KL, JSD): r at the student's top class k, where x_k = mx so b_k = -ls
  auto r_of = [&](double xc, double yc) {
    const double b = (xc - st.mx) * inv_t - st.ls, a = (yc - st.my) * inv_t - st.lt;
    if (kind == Divergence::kReverseKL) return b - a;
    const double e = (a - b) + (lb - l1b);
    return -((e > 0.0 ? e : 0.0) + l1b + std::log1p(std::exp(-std::fabs(e))));
  };
  double r_star = 0.0;
  if (kind != Divergence::kForwardKL) {
    int64_t top = 0;
    while (static_cast<double>(x[top]) != st.mx) ++top;
    r_star = r_of(st.mx, static_cast<double>(y[top]));
    if (!std::isfinite(r_star)) r_star = 0.0;  // the teacher masks the student's top class
  }
  const double w = kind == Divergence::kJensenShannon ? 1.0 - beta : 1.0;
  // gradient coefficients: (1 - h) w / T * scale for the divergence, h * scale for the hard term
  const double cd = (1.0 - h) * w * inv_t * grad_scale, ch = h * grad_scale;
  Consts<T> k;
  k.mx = static_cast<T>(st.mx);
  k.my = static_cast<T>(st.my);
  k.it = static_cast<T>(inv_t);
  k.ls = static_cast<T>(st.ls);
  k.lt = static_cast<T>(st.lt);
  k.lx = static_cast<T>(st.lx);
  k.lb = static_cast<T>(lb);
  k.l1b = static_cast<T>(l1b);
  k.cb = static_cast<T>(lb - l1b);
  k.rc = static_cast<T>(r_star);
  k.cd = static_cast<T>(cd);
  k.ch = static_cast<T>(ch);
  const double rc = static_cast<double>(k.rc);  // the centre as the sweep used it
  double sum_p = 0.0, sum_q = 0.0;
  const bool grad = g != nullptr;
  switch (kind) {
    case Divergence::kForwardKL:
      raw ? sweep<0, true>(grad, x, y, g, sq, C, k, &sum_p, &sum_q)
          : sweep<0, false>(grad, x, y, g, sq, C, k, &sum_p, &sum_q);
      break;
    case Divergence::kReverseKL:
      raw ? sweep<1, true>(grad, x, y, g, sq, C, k, &sum_p, &sum_q)
          : sweep<1, false>(grad, x, y, g, sq, C, k, &sum_p, &sum_q);
      break;
    default:
      raw ? sweep<2, true>(grad, x, y, g, sq, C, k, &sum_p, &sum_q)
          : sweep<2, false>(grad, x, y, g, sq, C, k, &sum_p, &sum_q);
  }
  // K' = sum_c q_c (r_c - r*); the divergence of q from the centre is r* + K'
  const double kq = sum_q;
  const double value = kind == Divergence::kForwardKL ? sum_p
                       : kind == Divergence::kReverseKL ? rc + kq
                                                        : beta * sum_p + (1.0 - beta) * (rc + kq);
  // loss = (1 - h) D + h CE, a zero weight times an infinite part being 0
  *loss = (h == 1.0 ? 0.0 : (1.0 - h) * value) + (hard ? h * ce : 0.0);
  if (!grad) return;
  if (kind != Divergence::kForwardKL && cd != 0.0)
    subtract_scaled(g, sq, C, static_cast<T>(cd * kq));
  if (hard) {  // the label's own entry in float64, formed again with the -1 of the one-hot target
    const double b = (xl - st.mx) * inv_t - st.ls, a = (yl - st.my) * inv_t - st.lt;
    const double q = std::exp(b);
    double d;
    if (kind == Divergence::kForwardKL)
      d = q - std::exp(a);
    else
      d = xl == -kInfinity<double> ? 0.0 : q * ((r_of(xl, yl) - rc) - kq);
    const double qx = raw ? std::exp((xl - st.mx) - st.lx) : q;
    g[label] = static_cast<T>((cd == 0.0 ? 0.0 : cd * d) + ch * (qx - 1.0));
  }
}

template <typename T>
void divergence_rows(const T* logits, const T* target_logits, int64_t n_rows, int64_t C,
                     const DivergenceOptions& opt, double* loss_out, T* grad, double grad_scale) {
  const bool need_sq = grad && opt.kind != Divergence::kForwardKL;  // q, kept by pass 2
#pragma omp parallel if (n_rows * C >= kParallelMinElements)
  {
    Buffer<T> sq(need_sq ? C : 0);
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
                        grad_scale, sq.data());
    }
  }
}

}  // namespace
CROSSENT_LEVEL_END

namespace crossent {
namespace CROSSENT_LEVEL {
const DivergenceKernels& divergence_kernels() {
  static const DivergenceKernels k{&divergence_rows<float>, &divergence_rows<double>};
  return k;
}
}  // namespace CROSSENT_LEVEL
}  // namespace crossent
