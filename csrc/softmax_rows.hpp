// The passes over softmax rows shared by the row losses (cross-entropy with class indices or
// distributions, focal) and the normalisations, and the two ways of spreading rows over the
// OpenMP threads (whole rows, or every row split across the threads). Inputs' type T in the
// element loops, sums of chunks in float64. Included by the softmax translation units (one
// copy per SIMD level).
//
// A row loss runs, per row: stats_sweep (one read of the row: running maximum, sum of exps and
// the loss's other sums, the exps stored into the gradient row), its epilogue (the scalars of
// the loss and gradient, in float64), then grad_sweep (the gradient row, in cache).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "elementwise.hpp"
#include "level.hpp"
#include "parallel.hpp"
#include "simd_math.hpp"

CROSSENT_LEVEL_BEGIN

// Rows are swept in chunks of kChunk elements (in L1): sums run in the input's type within a
// chunk (a vector of partial sums, each over a few terms), and the chunk sums are added in
// float64: float32 rows of 10^5 terms keep ~1e-7.
constexpr int64_t kChunk = 256;

inline int64_t n_chunks(int64_t C) { return (C + kChunk - 1) / kChunk; }

// The maximum of x[0, C). NaN is skipped by the compare; it still reaches every output through
// the sum of exps.
template <typename T>
T row_max(const T* __restrict x, int64_t C) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < C; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

// Soft-capping z = s tanh(x / s) (Gemma 2); -inf (a masked class) stays -inf, +inf becomes s.
template <typename T>
CROSSENT_INLINE T capped(T x, T cap) {
  return x == -std::numeric_limits<T>::infinity() ? x : cap * vtanh(x / cap);
}

// dz/dx of z = s tanh(a), a = x / s: sech^2(a) = 4e / (1 + e)^2 with e = exp(-2|a|), a few
// ulps everywhere (no subtraction); the form 1 - tanh^2 would lose its digits to the rounding
// of tanh where |tanh a| nears 1 (all of them in float32 by |a| = 9).
template <typename T>
CROSSENT_INLINE T sech2(T a) {
  const T e = exp_nonpos(T(-2) * (a < T(0) ? -a : a));
  const T q = T(1) + e;
  return T(4) * e / (q * q);
}

// (m, s = sum_c exp(x_c - m)) in one read of the row, by the online rule
// s <- s exp(m_old - m_new) + sum_chunk (Milakov & Gimelshein 2018), for the normalisations.
// Returns s; *m_out is the row maximum (+inf: stopped early, the caller takes the general path).
template <typename T>
double row_online(const T* __restrict x, int64_t C, T* m_out) {
  T m = -kInfinity<T>;
  double s = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T cm = -kInfinity<T>;
#pragma omp simd reduction(max : cm)
    for (int64_t c = c0; c < c1; ++c) cm = x[c] > cm ? x[c] : cm;
    if (cm > m) {
      if (cm == kInfinity<T>) {
        m = cm;
        break;
      }
      s *= std::exp(static_cast<double>(m) - static_cast<double>(cm));  // 0 while m = -inf
      m = cm;
    }
    const T sh = m == -kInfinity<T> ? T(0) : m;
    T part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t c = c0; c < c1; ++c) part += exp_nonpos(static_cast<T>(x[c] - sh));
    s += static_cast<double>(part);
  }
  *m_out = m;
  return s;
}

// ------------------------------------------------------------------ row statistics
// What the epilogues need of a row of z (the soft-capped logits), as sums against the shift m.
// A slice of a row (a chunk, a thread's share) has its own; merge adds them.
struct RowStats {
  double m = -kInfinity<double>;  // the maximum of z (-inf: no unmasked class yet; +inf: general path)
  double s = 0.0;     // sum_c exp(z_c - m)
  // over the unmasked classes (label smoothing): sum w_c, sum w_c (m - z_c), their number
  double w = 0.0, wd = 0.0, k = 0.0;
  // distributions: sum_c w_c t_c; the same over unmasked classes; sum w_c t_c (m - z_c) over
  // unmasked classes with w_c t_c != 0
  double t = 0.0, tl = 0.0, td = 0.0;
  int64_t masked_mass = 0;  // masked classes with target mass: their -log p is inf
  int64_t bad = 0;          // targets outside [0, 1] (NaN included)
  bool has_y = false;       // class indices: z of the target class, once its slice is seen
  double zy = 0.0;
  double xy = 0.0;          // and its input x (with Cap: for dz/dx)

  // The same sums against a shift m1 >= m: exp(z - m1) = exp(z - m) exp(m - m1) and
  // m1 - z = (m - z) + (m1 - m). While m = -inf no class was unmasked: the sums are 0.
  void rebase(double m1) {
    if (m != -kInfinity<double>) {
      s *= std::exp(m - m1);
      wd += (m1 - m) * w;
      td += (m1 - m) * tl;
    }
    m = m1;
  }

  void merge(RowStats o) {
    if (m == kInfinity<double> || o.m == kInfinity<double>) {
      m = kInfinity<double>;
      return;
    }
    if (o.m > m) rebase(o.m);
    else if (m > o.m) o.rebase(m);
    s += o.s;
    w += o.w;
    wd += o.wd;
    k += o.k;
    t += o.t;
    tl += o.tl;
    td += o.td;
    masked_mass += o.masked_mass;
    bad += o.bad;
    if (o.has_y) {
      has_y = true;
      zy = o.zy;
      xy = o.xy;
    }
  }
};

// The scalars of a row's gradient, from its epilogue:
//   g_j = (e_j k - ga w_j t_j - gb w_j [j unmasked]) dz_j/dx_j,  e_j = exp(z_j - m),
// t the targets (class indices: t = one-hot of y, that entry formed in float64 by the caller).
struct RowGrad {
  double m = 0.0;  // the shift of e (the row's maximum)
  double k = 0.0, ga = 0.0, gb = 0.0;
};

// Factor of chunk j's stored exps: k exp(shift_j - m) (the min keeps a 0 placeholder harmless).
inline double chunk_factor(double k, double shift_j, double m) {
  const double d = shift_j - m;
  return k * std::exp(d < 0.0 ? d : 0.0);
}

// The bits of a target t as an unsigned integer: for t in [0, 1] they are at most those of 1
// (non-negative floats order as their bits); a negative t (-0.0 too), NaN or > 1 lies above.
CROSSENT_INLINE uint32_t unit_bits(float t) { return float_to_bits(t); }
CROSSENT_INLINE uint64_t unit_bits(double t) { return double_to_bits(t); }

// The partial sums of one chunk, in T (see RowStats).
template <typename T>
struct ChunkSums {
  T s = 0, w = 0, wd = 0, k = 0, t = 0, tl = 0, td = 0, masked_mass = 0;
};

// One chunk's elements [c0, c1) against the shift sh: the sums, and the stored gradient row
// (see stats_sweep). Masked: the chunk holds a masked class (-inf), so every sum over unmasked
// classes selects; without, they are plain sums and the masked mass is 0. Returns the largest
// unit_bits of the chunk's targets (Dense).
template <bool Masked, bool Dense, bool Cap, bool Smooth, bool Weighted, bool HasG, typename T,
          typename TT>
CROSSENT_INLINE auto chunk_sums(const T* x, const TT* __restrict t, T* g, int64_t c0,
                                int64_t c1, T sh, T cap, const double* __restrict w,
                                ChunkSums<T>* out) {
  using Bits = decltype(unit_bits(TT(0)));
  T ps = 0, pw = 0, pwd = 0, pk = 0, pt = 0, ptl = 0, ptd = 0, pm = 0;
  Bits top = 0;
#pragma omp simd reduction(+ : ps, pw, pwd, pk, pt, ptl, ptd, pm) reduction(max : top)
  for (int64_t c = c0; c < c1; ++c) {
    const T xc = x[c];
    const bool live = !Masked || xc != -kInfinity<T>;
    const T zc = Cap ? capped(xc, cap) : xc;
    const T d = zc - sh;  // <= 0; with Cap up to tanh's rounding, clamped (NaN passes)
    const T e = exp_nonpos(Cap ? (d > T(0) ? T(0) : d) : d);
    if (HasG) g[c] = Cap ? xc : (Smooth && !live ? T(-0.0) : e);
    ps += e;
    const T wc = Weighted ? static_cast<T>(w[c]) : T(1);
    if (Smooth) {
      if (Masked) pk += live ? T(1) : T(0);
      if (Weighted) pw += live ? wc : T(0);
      pwd += live ? wc * -d : T(0);
    }
    if (Dense) {
      const TT tc = t[c];
      const T wt = Weighted ? wc * narrow<T>(tc) : narrow<T>(tc);
      const Bits b = unit_bits(tc);
      top = b > top ? b : top;
      ptl += live ? wt : T(0);
      if (Masked) {
        pt += wt;
        // decided on the inputs themselves, so a mass that rounds to 0 in T still counts
        pm += (!live && tc != TT(0) && (!Weighted || w[c] != 0.0)) ? T(1) : T(0);
      }
      ptd += live ? wt * -d : T(0);
    }
  }
  out->s = ps;
  out->k = Masked ? pk : static_cast<T>(c1 - c0);
  out->w = Weighted ? pw : out->k;
  out->wd = pwd;
  out->t = Masked ? pt : ptl;
  out->tl = ptl;
  out->td = ptd;
  out->masked_mass = pm;
  return top;
}

// One read of x[0, n) (a row, or a slice of one starting at a chunk boundary), adding to st.
// Per chunk: its maximum (and minimum: whether it holds a masked class), st rebased to the
// running maximum m, then per element z_c (capped when Cap), e_c = exp(z_c - sh_j) against the
// chunk's shift sh_j = m (0 while m = -inf) and the sums. With HasG, g receives e_c (sh_j into
// shifts[j]), -0.0 for a masked class when Smooth (so grad_sweep can tell it after an in-place
// sweep has overwritten x), or x_c itself when Cap (grad_sweep recomputes z_c and e_c against
// the final m, and needs x_c for an accurate dz/dx). x and g may be the same row: each element is read
// before it is written. Without Cap a +inf logit stops the sweep with st->m = +inf (the
// general path takes the row). Targets outside [0, 1] are counted only in the chunks whose
// largest unit_bits says there are some.
template <bool Dense, bool Cap, bool Smooth, bool Weighted, bool HasG, typename T, typename TT>
void stats_sweep(const T* x, const TT* __restrict t, T* g, int64_t n, T cap,
                 const double* __restrict w, T* __restrict shifts, RowStats* st) {
  constexpr bool kSelects = Smooth || Dense;  // sums over unmasked classes
  for (int64_t c0 = 0, j = 0; c0 < n; c0 += kChunk, ++j) {
    const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
    T cm = -kInfinity<T>, cmin = kInfinity<T>;
#pragma omp simd reduction(max : cm) reduction(min : cmin)
    for (int64_t c = c0; c < c1; ++c) {
      cm = x[c] > cm ? x[c] : cm;
      if (kSelects) cmin = x[c] < cmin ? x[c] : cmin;
    }
    if (!Cap && cm == kInfinity<T>) {
      st->m = kInfinity<double>;
      return;
    }
    // z is increasing in x: the chunk's largest z is that of its largest x
    const double cz = static_cast<double>(Cap ? capped(cm, cap) : cm);
    if (cz > st->m) st->rebase(cz);
    const T sh = st->m == -kInfinity<double> ? T(0) : static_cast<T>(st->m);
    if (HasG && !Cap) shifts[j] = sh;
    ChunkSums<T> p;
    const auto top =
        kSelects && cmin == -kInfinity<T>
            ? chunk_sums<true, Dense, Cap, Smooth, Weighted, HasG>(x, t, g, c0, c1, sh, cap, w, &p)
            : chunk_sums<false, Dense, Cap, Smooth, Weighted, HasG>(x, t, g, c0, c1, sh, cap, w,
                                                                   &p);
    st->s += static_cast<double>(p.s);
    if (Smooth) {
      st->k += static_cast<double>(p.k);
      st->w += static_cast<double>(p.w);
      st->wd += static_cast<double>(p.wd);
    }
    if (Dense) {
      st->t += static_cast<double>(p.t);
      st->tl += static_cast<double>(p.tl);
      st->td += static_cast<double>(p.td);
      st->masked_mass += static_cast<int64_t>(p.masked_mass);
      if (top > unit_bits(TT(1))) st->bad += count_outside_unit(t, c0, c1);
    }
  }
}

// The gradient of x[0, n) from what stats_sweep stored in g (see RowGrad):
//   g_c = (e_c k - ga w_c t_c - gb w_c [c unmasked]) dz_c/dx_c,
// e_c k = stored e_c times chunk_factor, or with Cap exp(z_c - m) k and dz/dx = sech^2(x_c/s)
// from the stored x_c (0 on a masked class, where the reference multiplies by 0 too: NaN stays
// NaN).
template <bool Dense, bool Cap, bool Smooth, bool Weighted, typename T, typename TT>
void grad_sweep(const TT* __restrict t, T* __restrict g, int64_t n, T cap,
                const double* __restrict w, const T* __restrict shifts, const RowGrad& r) {
  const T ga = static_cast<T>(r.ga), gb = static_cast<T>(r.gb);
  if (Cap) {
    const T m = static_cast<T>(r.m), k = static_cast<T>(r.k);
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) {
      const T xc = g[c];
      const bool live = xc != -kInfinity<T>;
      const T a = xc / cap, th = vtanh(a);
      const T z = live ? cap * th : xc;  // as capped(xc, cap)
      const T d = z - m;
      T v = exp_nonpos(d > T(0) ? T(0) : d) * k;
      const T wc = Weighted ? static_cast<T>(w[c]) : T(1);
      if (Dense) v -= ga * (Weighted ? wc * narrow<T>(t[c]) : narrow<T>(t[c]));
      if (Smooth) v -= live ? gb * wc : T(0);
      g[c] = v * (live ? sech2(a) : T(0));
    }
    return;
  }
  double last_shift = std::numeric_limits<double>::quiet_NaN();
  T f = 0;
  for (int64_t c0 = 0, j = 0; c0 < n; c0 += kChunk, ++j) {
    const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
    if (!(static_cast<double>(shifts[j]) == last_shift)) {
      last_shift = static_cast<double>(shifts[j]);
      f = static_cast<T>(chunk_factor(r.k, last_shift, r.m));
    }
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) {
      const T e = g[c];
      T v = e * f;
      const T wc = Weighted ? static_cast<T>(w[c]) : T(1);
      if (Dense) v -= ga * (Weighted ? wc * narrow<T>(t[c]) : narrow<T>(t[c]));
      if (Smooth) v -= std::signbit(e) ? T(0) : gb * wc;
      g[c] = v;
    }
  }
}

// ------------------------------------------------------------------ class-index rows
// Softmax losses of class indices (cross-entropy, focal) over rows or slices of rows, for
// run_rows / run_split. Epi is the loss's epilogue:
//   bool finish(n, y, RowStats&, RowGrad*)  writes the row's loss; false: the general path;
//   void general(n)                          the whole row by the scalar reference;
//   bool general_max(T m)                    whether a row of maximum m takes the general path;
//   double w_y(y)                            the weight of the target's term.
// The target's gradient entry is formed in float64 after grad_sweep: p_y A - w_y cancels when
// p_y is near 1.
template <typename Epi, bool Cap, bool Smooth, bool Weighted, bool HasG, typename T>
struct IndexRows {
  using Scalar = T;
  static constexpr bool kHasGrad = HasG;
  const Epi& epi;
  const T* x;
  T* g;
  const int64_t* labels;
  int64_t C;
  const double* w;  // smoothing weights (Weighted)
  T cap;
  bool has_ignore;
  int64_t ignore_index;
  double* loss_out;

  bool ignored(int64_t n) const { return has_ignore && labels[n] == ignore_index; }
  // in place, a row for the general path must be seen before the sweep overwrites it
  bool general_first(int64_t n) const {
    return HasG && static_cast<const T*>(g) == x && epi.general_max(row_max(x + n * C, C));
  }
  void slice(int64_t n, int64_t c0, int64_t c1, T* shifts, RowStats* st) const {
    const T* xr = x + n * C;
    const int64_t y = labels[n];
    if (y >= c0 && y < c1) {  // read before an in-place sweep overwrites it
      st->has_y = true;
      st->zy = static_cast<double>(Cap ? capped(xr[y], cap) : xr[y]);
      st->xy = static_cast<double>(xr[y]);
    }
    stats_sweep<false, Cap, Smooth, Weighted, HasG>(xr + c0, static_cast<const T*>(nullptr),
                                                    HasG ? g + n * C + c0 : nullptr, c1 - c0,
                                                    cap, Weighted ? w + c0 : nullptr,
                                                    shifts + c0 / kChunk, st);
  }
  bool finish(int64_t n, RowStats& st, RowGrad* r) const { return epi.finish(n, labels[n], st, r); }
  void general(int64_t n) const { epi.general(n); }
  void grad(int64_t n, int64_t c0, int64_t c1, const T* shifts, const RowGrad& r,
            const RowStats& st) const {
    T* gr = g + n * C;
    const int64_t y = labels[n];
    const bool has_y = y >= c0 && y < c1;
    const double e_y = has_y && !Cap ? static_cast<double>(gr[y]) : 0.0;
    grad_sweep<false, Cap, Smooth, Weighted>(static_cast<const T*>(nullptr), gr + c0, c1 - c0,
                                             cap, Weighted ? w + c0 : nullptr,
                                             shifts + c0 / kChunk, r);
    if (!has_y) return;
    const bool live = st.zy != -kInfinity<double>;
    const double wy = epi.w_y(y);
    double d;
    if (Cap) {
      const double dz = st.zy - r.m;
      d = std::exp(dz > 0.0 ? 0.0 : dz) * r.k;
    } else {
      d = e_y * chunk_factor(r.k, static_cast<double>(shifts[y / kChunk]), r.m);
    }
    d -= r.ga * wy + (live ? r.gb * wy : 0.0);
    if (Cap) {
      const double a = st.xy / static_cast<double>(cap);
      d *= live ? sech2(a) : 0.0;
    }
    gr[y] = static_cast<T>(d);
  }
  void zero(int64_t n, int64_t c0, int64_t c1) const {
    if (HasG) std::memset(g + n * C + c0, 0, static_cast<size_t>(c1 - c0) * sizeof(T));
  }
};

// ------------------------------------------------------------------ spreading rows over threads
// Rows: anything with the members of IndexRows (Scalar, kHasGrad, loss_out, ignored,
// general_first, slice, finish, general, grad, zero).

// Whole rows over the threads (static schedule).
template <typename Rows>
void run_rows(const Rows& rows, int64_t N, int64_t C) {
#pragma omp parallel if (N * C >= kParallelMinElements)
  {
    Buffer<typename Rows::Scalar> shifts(n_chunks(C));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      if (rows.ignored(n)) {
        rows.loss_out[n] = 0.0;
        rows.zero(n, 0, C);
        continue;
      }
      if (rows.general_first(n)) {
        rows.general(n);
        continue;
      }
      RowStats st;
      rows.slice(n, 0, C, shifts.data(), &st);
      RowGrad r;
      if (!rows.finish(n, st, &r)) {
        rows.general(n);
        continue;
      }
      if (Rows::kHasGrad) rows.grad(n, 0, C, shifts.data(), r, st);
    }
  }
}

// Few long rows: every row is split over the threads in whole chunks. Each thread sweeps its
// slice into its own RowStats; one thread merges them in thread order (deterministic for a
// given number of threads) and runs the epilogue (or the general path); then each thread
// writes its slice of the gradient. Out of place only.
template <typename Rows>
void run_split(const Rows& rows, int64_t N, int64_t C, int n_threads) {
  using T = typename Rows::Scalar;
  const int64_t chunks = n_chunks(C);
  Buffer<T> shifts(chunks);
  Buffer<RowStats> part(n_threads);
  RowStats total;
  RowGrad r;
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
    const int64_t j0 = chunks * t / nt, j1 = chunks * (t + 1) / nt;
    const int64_t c0 = j0 * kChunk, c1 = j1 * kChunk < C ? j1 * kChunk : C;
    for (int64_t n = 0; n < N; ++n) {
      if (rows.ignored(n)) {
        rows.zero(n, c0, c1);
#pragma omp single
        rows.loss_out[n] = 0.0;
        continue;  // the single's barrier keeps the threads on the same row
      }
      part[t] = RowStats();
      if (c1 > c0) rows.slice(n, c0, c1, shifts.data(), &part[t]);
#pragma omp barrier
#pragma omp single
      {
        total = part[0];
        for (int i = 1; i < nt; ++i) total.merge(part[i]);
        general = !rows.finish(n, total, &r);
        if (general) rows.general(n);
      }  // implicit barrier: total, r and general are visible to every thread
      if (!general && Rows::kHasGrad && c1 > c0) rows.grad(n, c0, c1, shifts.data(), r, total);
#pragma omp barrier
    }
  }
}

// The number of threads to split every row over (0: whole rows instead): fewer rows than
// threads, or a few rows that do not divide evenly, each long enough for every thread to get
// several chunks; out of place only.
inline int split_threads(int64_t N, int64_t C, bool in_place) {
#ifdef _OPENMP
  const int nt = omp_get_max_threads();
  if (nt > 1 && !in_place && (N < nt || (N < 4 * nt && N % nt != 0)) &&
      C >= 4 * kChunk * nt && N * C >= kParallelMinElements)
    return nt;
#else
  (void)N;
  (void)C;
  (void)in_place;
#endif
  return 0;
}

template <typename Rows>
void run(const Rows& rows, int64_t N, int64_t C, bool in_place) {
  const int nt = split_threads(N, C, in_place);
  if (nt > 0)
    run_split(rows, N, C, nt);
  else
    run_rows(rows, N, C);
}

// f(std::bool_constant<b>()): a run-time flag as a compile-time one.
template <typename F>
void with_flag(bool b, F&& f) {
  if (b)
    f(std::true_type());
  else
    f(std::false_type());
}

CROSSENT_LEVEL_END
