#include "softmax_ce.hpp"

#include <cmath>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "elementwise.hpp"
#include "parallel.hpp"
#include "row_scalar.hpp"
#include "simd_math.hpp"
#include "softmax_rows.hpp"

CROSSENT_LEVEL_BEGIN
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Soft-capping z = s * tanh(x / s); -inf (a masked class) stays -inf.
inline double capped(double x, double softcap) {
  if (softcap == 0.0 || x == -kInf) return x;
  return softcap * std::tanh(x / softcap);
}

// ------------------------------------------------------------------ general row (float64, scalar)
// Any row: soft-capped, or with a maximum that is not finite. z is a scratch row of C doubles;
// x is copied into it before g is written, so g may alias x.
template <typename T>
void general_row(const T* x, int64_t C, int64_t y, const SoftmaxCEOptions& opt, double* loss,
                 T* g, double grad_scale, Buffer<double>& z) {
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
  if (lse == -kInf) l = kInf;  // every class masked: the target has probability 0
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
    if (opt.softcap != 0.0) {  // a masked class has dz/dx = 0 (even its target term)
      const double t = zc / opt.softcap;
      d *= zc == -kInf ? 0.0 : 1.0 - t * t;
    }
    g[c] = static_cast<T>(d * grad_scale);
  }
}

// One row without soft-capping; returns false (having written nothing) when its maximum is not
// finite, for general_row to take. Same formulas as general_row with z = x and shift = m.
// Out of place without label smoothing: row_online (one sweep), then pass 3. In place, or with
// label smoothing: pass 1 (max), pass 2 (exps), pass 3 (scale), the row in cache after pass 1.
template <typename T>
bool fast_row(const T* x, int64_t C, int64_t y, const SoftmaxCEOptions& opt, double* loss, T* g,
              double grad_scale, Buffer<T>& shifts) {
  const double eps = opt.label_smoothing;
  const double* w = opt.weight;
  const double x_y = static_cast<double>(x[y]);  // read before an in-place pass overwrites it
  const bool online = eps == 0.0 && g != x;
  T m;
  double s, w_sum = 0.0, wdev_sum = 0.0;
  int64_t unmasked = 0;
  if (online) {
    s = row_online(x, g, C, shifts.data(), &m);
    if (!std::isfinite(m)) return false;
  } else {
    m = row_max(x, C);
    if (!std::isfinite(m)) return false;
    if (eps > 0.0)
      s = row_expsum_smooth(x, g, C, m, w, &w_sum, &wdev_sum, &unmasked);
    else
      s = g ? row_expsum_store(x, g, C, m) : row_expsum(x, C, m);
  }
  const double shift = static_cast<double>(m);
  const double log_s = std::log(s);
  const double lse = shift + log_s;
  const double wy = w ? w[y] : 1.0;
  const double eps_c = unmasked > 0 ? eps / static_cast<double>(unmasked) : 0.0;
  // l = (1-eps) w_y (lse - z_y) + (eps/C') sum_c w_c (lse - z_c) + z_loss w_y lse^2,
  // lse - z_c = log s + (m - z_c); a zero coefficient times an infinite -log p_y is 0.
  const double cy = (1.0 - eps) * wy;
  double l = cy != 0.0 ? cy * (log_s + (shift - x_y)) : 0.0;
  if (eps > 0.0) l += eps_c * (w_sum * log_s + wdev_sum);
  if (opt.z_loss > 0.0) l += opt.z_loss * wy * lse * lse;
  *loss = l;
  if (!g) return true;
  // d l / d z_j = p_j A - (eps/C') w_j [j unmasked] - (1-eps) w_y [j = y], p_j = e_j / s,
  //   A = (1-eps) w_y + (eps/C') W + 2 z_loss w_y lse.
  const double A = (1.0 - eps) * wy + eps_c * w_sum + 2.0 * opt.z_loss * wy * lse;
  const double k = grad_scale * A / s;
  double k_y = k;  // the factor of the target's entry
  if (online) {
    k_y = chunk_factor(k, static_cast<double>(shifts[y / kChunk]), shift);
    const double e_y = static_cast<double>(g[y]);
    row_scale_chunks(g, C, shifts.data(), m, k);
    g[y] = static_cast<T>(e_y * k_y - grad_scale * cy);
    return true;
  }
  const double e_y = static_cast<double>(g[y]);
  if (eps > 0.0)
    row_scale_smooth(g, C, static_cast<T>(k), w, grad_scale * eps_c);
  else
    row_scale(g, C, static_cast<T>(k));
  // The target's entry in float64: p_y A - (1-eps) w_y cancels when p_y is near 1.
  double d_y = e_y * k_y - grad_scale * cy;
  if (eps > 0.0 && x_y != -kInf) d_y -= grad_scale * eps_c * wy;
  g[y] = static_cast<T>(d_y);
  return true;
}

}  // namespace

// Few long rows (fewer rows than threads): every row is split over the threads in whole
// chunks. Each thread runs row_online on its slice, giving (m_t, s_t); the row's state is
// merged as m = max_t m_t, s = sum_t s_t exp(m_t - m) (the same online rule), then each thread
// scales its slice of the gradient. Out of place, without soft-capping or label smoothing (the
// callers check); a row whose maximum is not finite is finished by general_row.
template <typename T>
void softmax_ce_index_split(const T* logits, int64_t n_rows, int64_t C, const int64_t* labels,
                            const SoftmaxCEOptions& opt, double* loss_out, T* grad,
                            double grad_scale, int n_threads) {
  const int64_t n_chunks = (C + kChunk - 1) / kChunk;
  Buffer<T> shifts(n_chunks);
  Buffer<double> part_s(n_threads);
  Buffer<T> part_m(n_threads);
  Buffer<double> z;
  double k = 0.0;
  T m = 0;
  bool general = false;
#pragma omp parallel num_threads(n_threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
    const int nt = omp_get_num_threads();
#else
    const int t = 0, nt = 1;
#endif
    // thread t's slice: chunks [j0, j1)
    const int64_t j0 = n_chunks * t / nt, j1 = n_chunks * (t + 1) / nt;
    const int64_t c0 = j0 * kChunk, c1 = j1 * kChunk < C ? j1 * kChunk : C;
    for (int64_t n = 0; n < n_rows; ++n) {
      const T* x = logits + n * C;
      T* g = grad ? grad + n * C : nullptr;
      const int64_t y = labels[n];
      if (opt.has_ignore && y == opt.ignore_index) {
        if (g)
          for (int64_t c = c0; c < c1; ++c) g[c] = T(0);
#pragma omp single
        loss_out[n] = 0.0;
        continue;  // the single's barrier keeps the threads on the same row
      }
      T mt = -std::numeric_limits<T>::infinity();
      part_s[t] = c1 > c0 ? row_online(x + c0, g ? g + c0 : nullptr, c1 - c0, shifts.data() + j0,
                                       &mt)
                          : 0.0;
      part_m[t] = mt;
#pragma omp barrier
#pragma omp single
      {
        m = part_m[0];
        for (int i = 1; i < nt; ++i) m = part_m[i] > m ? part_m[i] : m;
        general = !std::isfinite(m);
        if (general) {
          if (z.empty()) z.resize((C));
          general_row(x, C, y, opt, loss_out + n, g, grad_scale, z);
        } else {
          double s = 0.0;  // s = sum_t s_t exp(m_t - m), in thread order (deterministic)
          for (int i = 0; i < nt; ++i)
            s += part_s[i] * std::exp(static_cast<double>(part_m[i]) - static_cast<double>(m));
          const double log_s = std::log(s);
          const double lse = static_cast<double>(m) + log_s;
          const double wy = opt.weight ? opt.weight[y] : 1.0;
          const double x_y = static_cast<double>(x[y]);
          // l = w_y (lse - z_y) + z_loss w_y lse^2 (no smoothing here); 0 * inf = 0
          double l = wy != 0.0 ? wy * (log_s + (static_cast<double>(m) - x_y)) : 0.0;
          if (opt.z_loss > 0.0) l += opt.z_loss * wy * lse * lse;
          loss_out[n] = l;
          // d l / d z_j = p_j A - w_y [j = y], A = w_y (1 + 2 z_loss lse), p_j = e_j / s
          k = grad_scale * wy * (1.0 + 2.0 * opt.z_loss * lse) / s;
        }
      }  // implicit barrier: m, k and general are visible to every thread
      if (!general && g) {
        const bool has_y = y >= c0 && y < c1;
        const double e_y = has_y ? static_cast<double>(g[y]) : 0.0;
        row_scale_chunks(g + c0, c1 - c0, shifts.data() + j0, m, k);
        if (has_y) {
          const double wy = opt.weight ? opt.weight[y] : 1.0;
          const double k_y = chunk_factor(k, static_cast<double>(shifts[y / kChunk]),
                                          static_cast<double>(m));
          g[y] = static_cast<T>(e_y * k_y - grad_scale * wy);
        }
      }
#pragma omp barrier
    }
  }
}

template <typename T>
void softmax_ce_index(const T* logits, int64_t n_rows, int64_t n_classes, const int64_t* labels,
                      const SoftmaxCEOptions& opt, double* loss_out, T* grad, double grad_scale) {
#ifdef _OPENMP
  const int n_threads = omp_get_max_threads();
  if (n_threads > 1 && n_rows < n_threads && n_classes >= 4 * kChunk * n_threads &&
      n_rows * n_classes >= kParallelMinElements &&
      opt.softcap == 0.0 && opt.label_smoothing == 0.0 &&
      static_cast<const void*>(grad) != static_cast<const void*>(logits)) {
    softmax_ce_index_split(logits, n_rows, n_classes, labels, opt, loss_out, grad, grad_scale,
                           n_threads);
    return;
  }
#endif
#pragma omp parallel if (n_rows * n_classes >= kParallelMinElements)
  {
    Buffer<double> z;
    Buffer<T> shifts((n_classes + kChunk - 1) / kChunk);
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
      if (opt.softcap == 0.0 && fast_row(x, n_classes, y, opt, loss_out + n, g, grad_scale, shifts))
        continue;
      if (z.empty()) z.resize((n_classes));
      general_row(x, n_classes, y, opt, loss_out + n, g, grad_scale, z);
    }
  }
}

// ------------------------------------------------------------------ dense targets
// t~_c = (1-eps) t_c + eps/C' [c unmasked];  l = -sum_c w_c t~_c log p_c + z_loss lse^2
// (a zero w_c t~_c times an infinite log p_c is 0);
// d l / d z_j = p_j (sum_c w_c t~_c + 2 z_loss lse) - w_j t~_j, times dz_j/dx_j with softcap.
namespace {

// Any row, in float64 (soft-capped, or with a maximum that is not finite); z: C doubles.
template <typename T, typename TT>
void dense_general_row(const T* x, const TT* t, int64_t C, const SoftmaxCEOptions& opt,
                       double* loss, T* g, double grad_scale, Buffer<double>& z) {
  const double eps = opt.label_smoothing;
  const double* w = opt.weight;
  double m = -kInf;
  int64_t unmasked = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double zc = capped(static_cast<double>(x[c]), opt.softcap);
    z[c] = zc;
    if (zc > m || std::isnan(zc)) m = std::isnan(m) ? m : zc;  // NaN max, as np.max
    unmasked += zc != -kInf;
  }
  const double shift = std::isfinite(m) ? m : 0.0;
  double s = 0.0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(z[c] - shift);
  const double log_s = std::log(s);
  const double lse = shift + log_s;
  const double eps_c = eps / static_cast<double>(unmasked > 0 ? unmasked : 1);
  double l = 0.0, wt_sum = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double tt = (1.0 - eps) * static_cast<double>(t[c]) + (z[c] != -kInf ? eps_c : 0.0);
    const double wt = (w ? w[c] : 1.0) * tt;
    wt_sum += wt;
    if (wt != 0.0) l += wt * (log_s + (shift - z[c]));  // -log p_c = log s + (m - z_c)
  }
  if (opt.z_loss > 0.0) l += opt.z_loss * lse * lse;
  if (lse == -kInf) l = kInf;
  *loss = l;
  if (!g) return;
  const double A = wt_sum + 2.0 * opt.z_loss * lse;
  for (int64_t c = 0; c < C; ++c) {
    const double zc = z[c];
    const double tt = (1.0 - eps) * static_cast<double>(t[c]) + (zc != -kInf ? eps_c : 0.0);
    double d = std::exp((zc - shift) - log_s) * A - (w ? w[c] : 1.0) * tt;
    if (opt.softcap != 0.0) {
      const double u = zc / opt.softcap;
      d *= zc == -kInf ? 0.0 : 1.0 - u * u;
    }
    g[c] = static_cast<T>(d * grad_scale);
  }
}

// Number of classes whose logit is not -inf.
template <typename T>
int64_t row_unmasked(const T* __restrict x, int64_t C) {
  const T ninf = -std::numeric_limits<T>::infinity();
  int64_t count = 0;
#pragma omp simd reduction(+ : count)
  for (int64_t c = 0; c < C; ++c) count += x[c] != ninf ? 1 : 0;
  return count;
}

// Pass 2 of a dense row (the row in cache after pass 1): s = sum e_c, e_c = exp(x_c - m),
// stored into g when given; S1 = sum w_c t~_c and S2 = sum w_c t~_c (x_c - m), so that
// l = sum_c w_c t~_c (lse - x_c) = S1 log s - S2 (S2 = -inf when a masked class has target
// mass: the loss is inf). Sums in T per chunk, chunks in float64.
template <bool Weighted, typename T, typename TT>
void dense_sums(const T* __restrict x, const TT* __restrict t, T* __restrict g, int64_t C, T m,
                T a, T eps_c, const double* __restrict w, double* s_out, double* s1_out,
                double* s2_out) {
  const T ninf = -std::numeric_limits<T>::infinity();
  double s = 0.0, s1 = 0.0, s2 = 0.0, masked_mass = 0.0;
  const bool a_pos = a != T(0);
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T ps = 0, p1 = 0, p2 = 0, pm = 0;
#pragma omp simd reduction(+ : ps, p1, p2, pm)
    for (int64_t c = c0; c < c1; ++c) {
      const T d = x[c] - m;
      const T e = exp_nonpos(d);
      if (g) g[c] = e;
      const bool live = x[c] != ninf;
      const T tt = a * narrow<T>(t[c]) + (live ? eps_c : T(0));
      const T wt = Weighted ? static_cast<T>(w[c]) * tt : tt;
      ps += e;
      p1 += wt;
      p2 += live ? wt * d : T(0);
      // a masked class (log p = -inf) with target mass costs inf; decided on the inputs
      // themselves, so a mass that rounds to 0 in T still counts
      pm += (!live && a_pos && t[c] != TT(0) && (!Weighted || w[c] != 0.0)) ? T(1) : T(0);
    }
    s += static_cast<double>(ps);
    s1 += static_cast<double>(p1);
    s2 += static_cast<double>(p2);
    masked_mass += static_cast<double>(pm);
  }
  *s_out = s;
  *s1_out = s1;
  *s2_out = masked_mass > 0.0 ? -std::numeric_limits<double>::infinity() : s2;
}

// Pass 3: g_c = e_c k - grad_scale w_c t~_c.
template <bool Weighted, typename T, typename TT>
void dense_scale(const T* __restrict x, const TT* __restrict t, T* __restrict g, int64_t C, T k,
                 T a, T eps_c, const double* __restrict w, T scale) {
  const T ninf = -std::numeric_limits<T>::infinity();
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const T tt = a * narrow<T>(t[c]) + (x[c] != ninf ? eps_c : T(0));
    const T wt = Weighted ? static_cast<T>(w[c]) * tt : tt;
    g[c] = g[c] * k - scale * wt;
  }
}

// One row without soft-capping, in T; false (nothing written) when the maximum is not finite.
template <typename T, typename TT>
bool dense_fast_row(const T* x, const TT* t, int64_t C, const SoftmaxCEOptions& opt,
                    double* loss, T* g, double grad_scale) {
  const T m = row_max(x, C);
  if (!std::isfinite(m)) return false;
  const double eps = opt.label_smoothing;
  const int64_t unmasked = eps > 0.0 ? row_unmasked(x, C) : C;
  const T a = static_cast<T>(1.0 - eps), eps_c = static_cast<T>(eps / static_cast<double>(unmasked));
  double s, s1, s2;
  if (opt.weight)
    dense_sums<true>(x, t, g, C, m, a, eps_c, opt.weight, &s, &s1, &s2);
  else
    dense_sums<false>(x, t, g, C, m, a, eps_c, opt.weight, &s, &s1, &s2);
  const double log_s = std::log(s);
  const double lse = static_cast<double>(m) + log_s;
  double l = s1 * log_s - s2;
  if (opt.z_loss > 0.0) l += opt.z_loss * lse * lse;
  *loss = l;
  if (!g) return true;
  const T k = static_cast<T>(grad_scale * (s1 + 2.0 * opt.z_loss * lse) / s);
  if (opt.weight)
    dense_scale<true>(x, t, g, C, k, a, eps_c, opt.weight, static_cast<T>(grad_scale));
  else
    dense_scale<false>(x, t, g, C, k, a, eps_c, opt.weight, static_cast<T>(grad_scale));
  return true;
}

}  // namespace

template <typename T, typename TT>
void softmax_ce_dense(const T* logits, int64_t n_rows, int64_t C, const TT* targets,
                      const SoftmaxCEOptions& opt, double* loss_out, T* grad, double grad_scale) {
#pragma omp parallel if (n_rows * C >= kParallelMinElements)
  {
    Buffer<double> z;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < n_rows; ++n) {
      const T* x = logits + n * C;
      const TT* t = targets + n * C;
      T* g = grad ? grad + n * C : nullptr;
      if (opt.softcap == 0.0 && dense_fast_row(x, t, C, opt, loss_out + n, g, grad_scale))
        continue;
      if (z.empty()) z.resize(C);
      dense_general_row(x, t, C, opt, loss_out + n, g, grad_scale, z);
    }
  }
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
    const double s = row_online(xr, static_cast<T*>(nullptr), C, static_cast<T*>(nullptr), &m);
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
  template void softmax_ce_dense<T, TT>(const T*, int64_t, int64_t, const TT*,             \
                                        const SoftmaxCEOptions&, double*, T*, double);
CROSSENT_INSTANTIATE_DENSE(float, float)
CROSSENT_INSTANTIATE_DENSE(float, double)
CROSSENT_INSTANTIATE_DENSE(double, float)
CROSSENT_INSTANTIATE_DENSE(double, double)

CROSSENT_LEVEL_END
