#include "measures.hpp"

#include "elementwise.hpp"
#include "parallel.hpp"
#include "simd_math.hpp"

CROSSENT_LEVEL_BEGIN
namespace {

constexpr int64_t kChunk = 256;

// One row: the measure's sum of terms (in T per chunk, float64 across chunks), the sums of p
// and q, and the count of bad entries. Terms, with 0 log y = 0 (x = 0 gives 0 for any y):
//   entropy       -p log p;             cross-entropy  -p log q (q = 0 < p: inf);
//   KL            p log(p / q) (q = 0 < p: inf; an overflowing ratio is counted as bad);
//   JS            (1/2) [p log(2p / s) + q log(2q / s)], s = p + q (no m = s/2 to underflow).
template <int Kind, typename T>
int64_t row(const T* __restrict p, const T* __restrict q, int64_t C, double* value,
            double* sum_p, double* sum_q) {
  constexpr T kTiny = sizeof(T) == 4 ? T(0x1p-100) : T(0x1p-1000);  // JS: 2 / s may overflow
  constexpr T kUp = sizeof(T) == 4 ? T(0x1p64) : T(0x1p128);
  double v = 0.0, sp = 0.0, sq = 0.0;
  T bad = 0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < C ? c0 + kChunk : C;
    T cv = 0, cp = 0, cq = 0;
#pragma omp simd reduction(+ : cv, cp, cq, bad)
    for (int64_t c = c0; c < c1; ++c) {
      const T pc = p[c];
      const T qc = Kind == kEntropy ? T(0) : q[c];
      bad += (pc >= T(0) && pc <= T(1)) ? T(0) : T(1);
      if (Kind != kEntropy) bad += (qc >= T(0) && qc <= T(1)) ? T(0) : T(1);
      T term;
      if (Kind == kEntropy) {
        term = pc == T(0) ? T(0) : -pc * vlog_pos(pc);
      } else if (Kind == kCrossEntropy) {
        term = pc == T(0) ? T(0) : -pc * vlog(qc);
      } else if (Kind == kKL) {
        const T ratio = pc / (qc == T(0) ? T(1) : qc);
        bad += (ratio == kInfinity<T>) ? T(1) : T(0);  // x / y beyond the range: recomputed in float64
        term = pc == T(0) ? T(0) : (qc == T(0) ? kInfinity<T> : pc * vlog_pos(ratio));
      } else {
        // 2p / s and 2q / s (p / m and q / m, m = s / 2; both in [0, 2]) from one division;
        // below kTiny, p, q and s are scaled by kUp first so that 2 / s stays finite
        const T s = pc + qc;
        const T up = s < kTiny ? kUp : T(1);
        const T ss = s * up;
        const T two_over_s = T(2) / (s == T(0) ? T(1) : ss);
        const T tp = pc == T(0) ? T(0) : pc * vlog_pos((pc * up) * two_over_s);
        const T tq = qc == T(0) ? T(0) : qc * vlog_pos((qc * up) * two_over_s);
        term = T(0.5) * (tp + tq);
      }
      cv += term;
      cp += pc;
      cq += qc;
    }
    v += static_cast<double>(cv);
    sp += static_cast<double>(cp);
    sq += static_cast<double>(cq);
  }
  *value = v;
  *sum_p = sp;
  if (sum_q) *sum_q = sq;
  return static_cast<int64_t>(bad);
}

template <int Kind, typename T>
int64_t rows(const T* p, const T* q, int64_t N, int64_t C, double* value, double* sum_p,
             double* sum_q) {
  int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (N * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; ++n)
    bad += row<Kind>(p + n * C, Kind == kEntropy ? nullptr : q + n * C, C, value + n, sum_p + n,
                     sum_q ? sum_q + n : nullptr);
  return bad;
}

}  // namespace

template <typename T>
int64_t measure_rows(int kind, const T* p, const T* q, int64_t N, int64_t C, double* value,
                     double* sum_p, double* sum_q) {
  switch (kind) {
    case kEntropy: return rows<kEntropy>(p, q, N, C, value, sum_p, sum_q);
    case kCrossEntropy: return rows<kCrossEntropy>(p, q, N, C, value, sum_p, sum_q);
    case kKL: return rows<kKL>(p, q, N, C, value, sum_p, sum_q);
    default: return rows<kJS>(p, q, N, C, value, sum_p, sum_q);
  }
}

template int64_t measure_rows<float>(int, const float*, const float*, int64_t, int64_t, double*,
                                     double*, double*);
template int64_t measure_rows<double>(int, const double*, const double*, int64_t, int64_t,
                                      double*, double*, double*);

CROSSENT_LEVEL_END
