#include "softmax_ce.hpp"

#include <cmath>
#include <limits>

#include "elementwise.hpp"
#include "parallel.hpp"
#include "row_scalar.hpp"
#include "simd_math.hpp"
#include "softmax_rows.hpp"

CROSSENT_LEVEL_BEGIN
namespace {

// ------------------------------------------------------------------ the epilogue
// Every softmax cross-entropy row, of class indices or of distributions, on the fast path
// (whole or split over the threads) or the scalar reference below, ends here. With
// t~_c = (1-eps) t_c + (eps/C') [c unmasked] (C' unmasked classes; class indices: t = one-hot
// of y) and z_loss weighted by zw (w_y for class indices, 1 for distributions):
//   l = sum_c w_c t~_c (lse - z_c) + z_loss zw lse^2,  lse - z_c = log s + (m - z_c),
// so l = M log s + (1-eps) TD + (eps/C') WD with M = sum_c w_c t~_c = (1-eps) T + (eps/C') W
// (a zero w_c t~_c times an infinite -log p_c is 0; a masked class with target mass costs inf).
// Gradient: d lse / d z_j = p_j = e_j / s, so
//   d l / d z_j = p_j (M + 2 z_loss zw lse) - w_j t~_j
// which is RowGrad with k = grad_scale (M + 2 z_loss zw lse) / s, ga = grad_scale (1-eps),
// gb = grad_scale eps/C'. Every class masked (lse = -inf): loss inf, gradient NaN.
double ce_epilogue(const RowStats& st, const SoftmaxCEOptions& opt, double zw,
                   double grad_scale, RowGrad* r) {
  const double eps = opt.label_smoothing, a = 1.0 - eps;
  const double eps_c = st.k > 0.0 ? eps / st.k : 0.0;
  const double log_s = std::log(st.s);
  const double lse = st.m + log_s;
  const double mass = a * st.t + eps_c * st.w;
  double l = st.masked_mass > 0 && a > 0.0 ? kInfinity<double> : zero_times(a * st.tl, log_s) + a * st.td;
  if (eps > 0.0) l += eps_c * (st.w * log_s + st.wd);
  if (opt.z_loss > 0.0) l += opt.z_loss * zw * lse * lse;
  if (lse == -kInfinity<double>) l = kInfinity<double>;
  r->m = st.m;
  r->k = lse == -kInfinity<double> ? std::numeric_limits<double>::quiet_NaN()
                       : grad_scale * (mass + 2.0 * opt.z_loss * zw * lse) / st.s;
  r->ga = grad_scale * a;
  r->gb = grad_scale * eps_c;
  return l;
}

// Class indices as distributions: t = one-hot of y, so T = w_y and, when y is unmasked,
// TL = w_y and TD = w_y (m - z_y) (0 for w_y = 0); a masked y with w_y != 0 costs inf.
void index_target(RowStats* st, double wy) {
  const bool live = st->zy != -kInfinity<double>;
  st->t = wy;
  st->tl = live ? wy : 0.0;
  st->td = live && wy != 0.0 ? wy * (st->m - st->zy) : 0.0;
  st->masked_mass = !live && wy != 0.0;
}

inline double capped_d(double x, double cap) {
  return cap == 0.0 || x == -kInfinity<double> ? x : cap * std::tanh(x / cap);
}

// ------------------------------------------------------------------ scalar reference
// One row in float64, one class at a time, with libm: the readable form of the fast path
// (the same statistics and the same epilogue), and the path of rows holding +inf (no shift
// then: m = 0, as the NumPy reference). Class indices (Dense false): y; distributions: t.
// Returns the number of targets outside [0, 1].
template <bool Dense, typename T, typename TT>
int64_t general_row(const T* x, const TT* t, int64_t y, int64_t C, const SoftmaxCEOptions& opt,
                    double* loss, T* g, double grad_scale) {
  const double cap = opt.softcap;
  const double* w = opt.weight;
  Buffer<double> z(C);  // z is formed before g is written, so g may alias x
  double m = -kInfinity<double>;
  for (int64_t c = 0; c < C; ++c) {
    z[c] = capped_d(static_cast<double>(x[c]), cap);
    if (std::isnan(z[c]) || std::isnan(m)) m = std::nan("");  // NaN max, as np.max
    else if (z[c] > m) m = z[c];
  }
  RowStats st;
  st.m = std::isfinite(m) ? m : 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double dev = st.m - z[c];
    const bool live = z[c] != -kInfinity<double>;
    const double wc = w ? w[c] : 1.0;
    st.s += std::exp(-dev);
    if (live) {
      st.w += wc;
      st.wd += wc * dev;
      st.k += 1.0;
    }
    if (Dense) {
      const double wt = wc * static_cast<double>(t[c]);
      st.t += wt;
      if (live) {
        st.tl += wt;
        if (wt != 0.0) st.td += wt * dev;
      } else if (t[c] != TT(0) && wc != 0.0) {
        ++st.masked_mass;
      }
      if (!(t[c] >= TT(0) && t[c] <= TT(1))) ++st.bad;
    }
  }
  const double wy = Dense ? 1.0 : (w ? w[y] : 1.0);
  if (!Dense) {
    st.zy = z[y];
    index_target(&st, wy);
  }
  RowGrad r;
  *loss = ce_epilogue(st, opt, wy, grad_scale, &r);
  if (!g) return st.bad;
  for (int64_t c = 0; c < C; ++c) {
    const bool live = z[c] != -kInfinity<double>;
    const double wc = w ? w[c] : 1.0;
    const double tc = Dense ? static_cast<double>(t[c]) : (c == y ? 1.0 : 0.0);
    double d = std::exp(z[c] - r.m) * r.k - r.ga * wc * tc - (live ? r.gb * wc : 0.0);
    if (cap != 0.0) {
      const double u = z[c] / cap;
      d *= live ? 1.0 - u * u : 0.0;
    }
    g[c] = static_cast<T>(d);
  }
  return st.bad;
}

// ------------------------------------------------------------------ class indices
template <typename T>
struct IndexEpilogue {
  const T* x;
  T* g;
  const int64_t* labels;
  int64_t C;
  const SoftmaxCEOptions& opt;
  double* loss_out;
  double grad_scale;

  double w_y(int64_t y) const { return opt.weight ? opt.weight[y] : 1.0; }
  bool general_max(T m) const { return opt.softcap == 0.0 && m == std::numeric_limits<T>::infinity(); }
  bool finish(int64_t n, int64_t y, RowStats& st, RowGrad* r) const {
    if (st.m == kInfinity<double>) return false;
    index_target(&st, w_y(y));
    loss_out[n] = ce_epilogue(st, opt, w_y(y), grad_scale, r);
    return true;
  }
  void general(int64_t n) const {
    general_row<false>(x + n * C, static_cast<const T*>(nullptr), labels[n], C, opt, loss_out + n,
                       g ? g + n * C : nullptr, grad_scale);
  }
};

}  // namespace

template <typename T>
void softmax_ce_index(const T* logits, int64_t n_rows, int64_t n_classes, const int64_t* labels,
                      const SoftmaxCEOptions& opt, double* loss_out, T* grad, double grad_scale) {
  const IndexEpilogue<T> epi{logits, grad, labels, n_classes, opt, loss_out, grad_scale};
  const bool smooth = opt.label_smoothing > 0.0;
  with_flag(opt.softcap != 0.0, [&](auto cap) {
    with_flag(smooth, [&](auto sm) {
      with_flag(smooth && opt.weight, [&](auto weighted) {
        with_flag(grad != nullptr, [&](auto has_g) {
          const IndexRows<IndexEpilogue<T>, cap(), sm(), weighted(), has_g(), T> rows{
              epi, logits, grad, labels, n_classes, opt.weight, static_cast<T>(opt.softcap),
              opt.has_ignore, opt.ignore_index, loss_out};
          run(rows, n_rows, n_classes, static_cast<const T*>(grad) == logits);
        });
      });
    });
  });
}

// ------------------------------------------------------------------ distributions
namespace {

// Rows of target distributions t (type TT) for run_rows / run_split; the members as IndexRows.
// Smooth: label smoothing (its sums over unmasked classes).
template <bool Cap, bool Smooth, bool Weighted, bool HasG, typename T, typename TT>
struct DenseRows {
  using Scalar = T;
  static constexpr bool kHasGrad = HasG;
  const T* x;
  const TT* t;
  T* g;
  int64_t C;
  const SoftmaxCEOptions& opt;
  double* loss_out;
  double grad_scale;
  int64_t* n_bad;

  bool ignored(int64_t) const { return false; }
  bool general_first(int64_t n) const {
    return HasG && !Cap && static_cast<const T*>(g) == x &&
           row_max(x + n * C, C) == std::numeric_limits<T>::infinity();
  }
  void slice(int64_t n, int64_t c0, int64_t c1, T* shifts, RowStats* st) const {
    stats_sweep<true, Cap, Smooth, Weighted, HasG>(
        x + n * C + c0, t + n * C + c0, HasG ? g + n * C + c0 : nullptr, c1 - c0,
        static_cast<T>(opt.softcap), Weighted ? opt.weight + c0 : nullptr, shifts + c0 / kChunk,
        st);
  }
  void count_bad(int64_t bad) const {
    if (bad == 0) return;
#pragma omp atomic
    *n_bad += bad;
  }
  bool finish(int64_t n, RowStats& st, RowGrad* r) const {
    if (st.m == kInfinity<double>) return false;
    count_bad(st.bad);
    loss_out[n] = ce_epilogue(st, opt, 1.0, grad_scale, r);
    return true;
  }
  void general(int64_t n) const {
    count_bad(general_row<true>(x + n * C, t + n * C, 0, C, opt, loss_out + n,
                                HasG ? g + n * C : nullptr, grad_scale));
  }
  void grad(int64_t n, int64_t c0, int64_t c1, const T* shifts, const RowGrad& r,
            const RowStats&) const {
    grad_sweep<true, Cap, Smooth, Weighted>(t + n * C + c0, g + n * C + c0, c1 - c0,
                                          static_cast<T>(opt.softcap),
                                          Weighted ? opt.weight + c0 : nullptr,
                                          shifts + c0 / kChunk, r);
  }
  void zero(int64_t, int64_t, int64_t) const {}
};

}  // namespace

template <typename T, typename TT>
int64_t softmax_ce_dense(const T* logits, int64_t n_rows, int64_t n_classes, const TT* targets,
                         const SoftmaxCEOptions& opt, double* loss_out, T* grad,
                         double grad_scale) {
  int64_t n_bad = 0;
  with_flag(opt.softcap != 0.0, [&](auto cap) {
    with_flag(opt.label_smoothing > 0.0, [&](auto sm) {
      with_flag(opt.weight != nullptr, [&](auto weighted) {
        with_flag(grad != nullptr, [&](auto has_g) {
          const DenseRows<cap(), sm(), weighted(), has_g(), T, TT> rows{
              logits, targets, grad, n_classes, opt, loss_out, grad_scale, &n_bad};
          run(rows, n_rows, n_classes, static_cast<const T*>(grad) == logits);
        });
      });
    });
  });
  return n_bad;
}

// ------------------------------------------------------------------ logsumexp, softmax, log_softmax
namespace {

// A row whose maximum is not finite, as the NumPy reference computes it.
template <typename T>
void normalize_general_row(const T* x, int64_t C, double* lse, T* out, bool log_space) {
  double shift, log_s;
  shifted_log_sum_exp(x, C, &shift, &log_s);
  if (lse) *lse = shift + log_s;
  if (!out) return;
  for (int64_t c = 0; c < C; ++c) {  // log p_c = (x_c - shift) - log s (NaN for inf - inf)
    const double lp = (static_cast<double>(x[c]) - shift) - log_s;
    out[c] = static_cast<T>(log_space ? lp : std::exp(lp));
  }
}

// log p_c = (x_c - m) - log s, formed in float64 (where x_c - m is exact).
template <typename T>
void row_log_softmax(const T* x, T* out, int64_t C, double m, double log_s) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c)
    out[c] = static_cast<T>((static_cast<double>(x[c]) - m) - log_s);
}

// p_c = exp(x_c - m) / s: one exp and one multiply per element.
template <typename T>
void row_softmax(const T* x, T* out, int64_t C, T m, T inv_s) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) out[c] = exp_nonpos(static_cast<T>(x[c] - m)) * inv_s;
}

}  // namespace

template <typename T>
void normalize_rows(const T* x, int64_t n_rows, int64_t C, double* lse_out, T* out,
                    bool log_space) {
#pragma omp parallel for schedule(static) if (n_rows * C >= kParallelMinElements)
  for (int64_t n = 0; n < n_rows; ++n) {
    const T* xr = x + n * C;
    T* o = out ? out + n * C : nullptr;
    double* lse = lse_out ? lse_out + n : nullptr;
    // Pass 1: (m, s) in one read by the online rule; a non-finite maximum takes the general path.
    T m;
    const double s = row_online(xr, C, &m);
    if (!std::isfinite(m)) {
      normalize_general_row(xr, C, lse, o, log_space);
      continue;
    }
    const double log_s = std::log(s);
    if (lse) *lse = static_cast<double>(m) + log_s;
    if (!o) continue;
    // Pass 2, the row in cache: log p or p (o may alias xr: each element is read first).
    if (log_space)
      row_log_softmax(xr, o, C, static_cast<double>(m), log_s);
    else
      row_softmax(xr, o, C, m, static_cast<T>(1.0 / s));
  }
}

template void normalize_rows<float>(const float*, int64_t, int64_t, double*, float*, bool);
template void normalize_rows<double>(const double*, int64_t, int64_t, double*, double*, bool);

template void softmax_ce_index<float>(const float*, int64_t, int64_t, const int64_t*,
                                      const SoftmaxCEOptions&, double*, float*, double);
template void softmax_ce_index<double>(const double*, int64_t, int64_t, const int64_t*,
                                       const SoftmaxCEOptions&, double*, double*, double);
#define CROSSENT_INSTANTIATE_DENSE(T, TT)                                                  \
  template int64_t softmax_ce_dense<T, TT>(const T*, int64_t, int64_t, const TT*,          \
                                           const SoftmaxCEOptions&, double*, T*, double);
CROSSENT_INSTANTIATE_DENSE(float, float)
CROSSENT_INSTANTIATE_DENSE(float, double)
CROSSENT_INSTANTIATE_DENSE(double, float)
CROSSENT_INSTANTIATE_DENSE(double, double)

CROSSENT_LEVEL_END
