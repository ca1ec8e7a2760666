// The passes over one softmax row shared by the row losses (cross-entropy, focal) and the
// normalisations: maximum, online max + sum of exps (optionally storing the exps into the
// gradient row), and the scaling of the stored exps. Inputs' type T throughout, sums of chunks
// in float64. Included by the softmax translation units (one copy per SIMD level).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "level.hpp"
#include "simd_math.hpp"

CROSSENT_LEVEL_BEGIN

// ------------------------------------------------------------------ fast row (SIMD, no softcap)
// Pass 1 (the one read of the row from memory): the maximum m. NaN is skipped by the compare;
// it still reaches every output through s below.
template <typename T>
T row_max(const T* __restrict x, int64_t C) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < C; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

// Pass 2, forward only: s = sum_c exp(x_c - m) (the row is in cache now). Sums run in the
// input's type over chunks of kChunk elements (a vector of partial sums, each over a few
// terms), and the chunk sums are added in float64: float32 rows of 10^5 terms keep ~1e-7.
constexpr int64_t kChunk = 256;

template <typename T>
double row_expsum(const T* __restrict x, int64_t C, T m) {
  double s = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t c = c0; c < c1; ++c) part += exp_nonpos(static_cast<T>(x[c] - m));
    s += static_cast<double>(part);
  }
  return s;
}

// Pass 2 with the gradient: e_c = exp(x_c - m) stored into g (one exp per element), summed.
// x and g may be the same row: each element is read before it is written.
template <typename T>
double row_expsum_store(const T* x, T* g, int64_t C, T m) {
  double s = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t c = c0; c < c1; ++c) {
      const T e = exp_nonpos(static_cast<T>(x[c] - m));
      g[c] = e;
      part += e;
    }
    s += static_cast<double>(part);
  }
  return s;
}

// Passes 1 + 2 in one sweep, for rows whose gradient goes to another buffer (or nowhere): per
// chunk of kChunk elements (in L1), the chunk maximum, then the running maximum m and
// s = sum exp(x_c - m) updated by the online rule s <- s exp(m_old - m_new) + sum_chunk
// (Milakov & Gimelshein 2018). The row is read from memory once, while the exps of the chunk
// before it are computed. g (if not nullptr) receives e_c = exp(x_c - shift_j), shift_j the
// running maximum at chunk j (0 while it is -inf), recorded in shifts[j] for pass 3.
// Returns s; *m_out is the row maximum (+inf: stopped early, the caller takes the general path).
template <typename T>
double row_online(const T* __restrict x, T* __restrict g, int64_t C,
                                  T* shifts, T* m_out) {
  constexpr T kInfT = std::numeric_limits<T>::infinity();
  T m = -kInfT;
  double s = 0.0;
  for (int64_t c0 = 0, j = 0; c0 < C; c0 += kChunk, ++j) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T cm = -kInfT;
#pragma omp simd reduction(max : cm)
    for (int64_t c = c0; c < c1; ++c) cm = x[c] > cm ? x[c] : cm;
    if (cm > m) {
      if (cm == kInfT) {
        m = cm;
        break;
      }
      s *= std::exp(static_cast<double>(m) - static_cast<double>(cm));  // 0 while m = -inf
      m = cm;
    }
    const T sh = m == -kInfT ? T(0) : m;
    T part = 0;
    if (g) {
      shifts[j] = sh;
#pragma omp simd reduction(+ : part)
      for (int64_t c = c0; c < c1; ++c) {
        const T e = exp_nonpos(static_cast<T>(x[c] - sh));
        g[c] = e;
        part += e;
      }
    } else {
#pragma omp simd reduction(+ : part)
      for (int64_t c = c0; c < c1; ++c) part += exp_nonpos(static_cast<T>(x[c] - sh));
    }
    s += static_cast<double>(part);
  }
  *m_out = m;
  return s;
}

// Factor of chunk j in pass 3: k exp(shift_j - m) (the min keeps a 0 placeholder harmless).
inline double chunk_factor(double k, double shift_j, double m) {
  const double d = shift_j - m;
  return k * std::exp(d < 0.0 ? d : 0.0);
}

// Pass 3 after row_online: g_c = e_c k exp(shift_j - m), chunk by chunk.
template <typename T>
void row_scale_chunks(T* __restrict g, int64_t C, const T* shifts, T m,
                                      double k) {
  double last_shift = std::numeric_limits<double>::quiet_NaN();
  T f = 0;
  for (int64_t c0 = 0, j = 0; c0 < C; c0 += kChunk, ++j) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    if (!(static_cast<double>(shifts[j]) == last_shift)) {
      last_shift = static_cast<double>(shifts[j]);
      f = static_cast<T>(chunk_factor(k, last_shift, static_cast<double>(m)));
    }
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) g[c] *= f;
  }
}

// Pass 2 with label smoothing: also W = sum w_c, D = sum w_c (m - x_c) and C' over unmasked
// classes; a masked class stores -0.0 (its exp is +0) so pass 3 can still tell it apart after
// an in-place pass has overwritten the logits.
template <bool HasW, bool HasG, typename T>
double row_expsum_smooth_impl(const T* x, T* g, int64_t C, T m,
                              const double* __restrict w, double* w_sum_out, double* wdev_out,
                              int64_t* count_out) {
  double s = 0.0, w_sum = 0.0, wdev = 0.0, count = 0.0;
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T ps = 0, pw = 0, pd = 0, pc = 0;  // sums in T per chunk (one vector type), float64 across
#pragma omp simd reduction(+ : ps, pw, pd, pc)
    for (int64_t c = c0; c < c1; ++c) {
      const T xc = x[c];
      const T e = exp_nonpos(static_cast<T>(xc - m));
      const bool live = xc != ninf;
      const T wc = live ? (HasW ? static_cast<T>(w[c]) : T(1)) : T(0);
      if (HasG) g[c] = live ? e : T(-0.0);
      ps += e;
      pw += wc;
      pd += live ? wc * (m - xc) : T(0);
      pc += live ? T(1) : T(0);
    }
    s += static_cast<double>(ps);
    w_sum += static_cast<double>(pw);
    wdev += static_cast<double>(pd);
    count += static_cast<double>(pc);
  }
  *w_sum_out = w_sum;
  *wdev_out = wdev;
  *count_out = static_cast<int64_t>(count);
  return s;
}

template <typename T>
double row_expsum_smooth(const T* x, T* g, int64_t C, T m, const double* w, double* w_sum_out,
                         double* wdev_out, int64_t* count_out) {
  if (w)
    return g ? row_expsum_smooth_impl<true, true>(x, g, C, m, w, w_sum_out, wdev_out, count_out)
             : row_expsum_smooth_impl<true, false>(x, g, C, m, w, w_sum_out, wdev_out, count_out);
  return g ? row_expsum_smooth_impl<false, true>(x, g, C, m, w, w_sum_out, wdev_out, count_out)
           : row_expsum_smooth_impl<false, false>(x, g, C, m, w, w_sum_out, wdev_out, count_out);
}

// Pass 3: g_c = e_c k (k = grad_scale A / s), in place in the cache-resident gradient row.
template <typename T>
void row_scale(T* __restrict g, int64_t C, T k) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) g[c] *= k;
}

// Pass 3 with label smoothing: g_c = e_c k - grad_scale (eps/C') w_c on unmasked classes.
template <typename T>
void row_scale_smooth(T* __restrict g, int64_t C, T k, const double* w, double b) {
  if (w) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const T e = g[c];
      g[c] = e * k - (std::signbit(e) ? T(0) : static_cast<T>(b * w[c]));
    }
    return;
  }
  const T bt = static_cast<T>(b);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const T e = g[c];
    g[c] = e * k - (std::signbit(e) ? T(0) : bt);
  }
}

CROSSENT_LEVEL_END
