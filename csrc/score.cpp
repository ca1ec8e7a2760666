// Scoring probability predictions in one pass over each row (see score.hpp), compiled once per
// SIMD level like every kernel (kernel_table.hpp).
#include "score.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "simd_math.hpp"

CROSSENT_LEVEL_BEGIN
namespace {

constexpr int64_t kBlock = 256;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Per-row values of a block of rows.
struct Rows {
  double top[kBlock], low[kBlock], sum[kBlock], squares[kBlock], truth[kBlock], hit[kBlock];
  double loss[kBlock], brier[kBlock], bin[kBlock];
};

// Eight rows at a time down the classes, in GCC vector types (one AVX-512 register of double,
// two AVX2 or four SSE2 registers): the row is the lane, and the accumulators stay in registers
// while the class columns stream past. Per row: the top probability and its class (the first
// class reaching it: argmax), the lowest, the sum, the sum of squares (a NaN, which max and min
// may skip, still makes the sum NaN) and the label's probability.
constexpr int64_t kLanes = 8;
typedef double Vd __attribute__((vector_size(8 * kLanes)));
typedef int64_t Vi __attribute__((vector_size(8 * kLanes)));

// (an out-parameter: a vector return value has no fixed ABI across the levels, GCC warns)
template <typename T>
CROSSENT_INLINE void load_lanes(const T* q, Vd& out) {
  typedef T Vt __attribute__((vector_size(sizeof(T) * kLanes)));
  Vt v;
  std::memcpy(&v, q, sizeof v);
  out = __builtin_convertvector(v, Vd);
}

// Rows [j0, j0 + w) of the block: w = kLanes when Full; a block's last rows (not Full) fill
// the lanes they have, the others holding 0 and label -1, and not stored.
template <typename T, bool Full>
CROSSENT_INLINE void lane_stats(const T* const* cols, int64_t C, int64_t i0, int64_t j0,
                                int64_t w, const int64_t* __restrict labels, Rows& r) {
  if (Full) w = kLanes;  // a constant: fixed-size loads and stores
  Vd top = Vd{} - kInf, low = Vd{} + kInf, sum = Vd{}, squares = Vd{}, truth = Vd{};
  Vi arg = Vi{}, y = Vi{} - 1;
  std::memcpy(&y, labels + j0, sizeof(int64_t) * w);
  for (int64_t k = 0; k < C; ++k) {
    Vd v;
    if (Full) {
      load_lanes(cols[k] + i0 + j0, v);
    } else {
      T tail[kLanes] = {};
      std::memcpy(tail, cols[k] + i0 + j0, sizeof(T) * w);
      load_lanes(tail, v);
    }
    sum += v;
    squares += v * v;
    const Vi above = v > top;  // strictly: a later class equal to the top is not argmax
    arg = above ? Vi{} + k : arg;
    top = above ? v : top;
    low = v < low ? v : low;  // min(low, v)
    truth = y == k ? v : truth;
  }
  const Vd hit = arg == y ? Vd{} + 1.0 : Vd{};
  const size_t bytes = sizeof(double) * w;
  std::memcpy(r.top + j0, &top, bytes);
  std::memcpy(r.low + j0, &low, bytes);
  std::memcpy(r.sum + j0, &sum, bytes);
  std::memcpy(r.squares + j0, &squares, bytes);
  std::memcpy(r.truth + j0, &truth, bytes);
  std::memcpy(r.hit + j0, &hit, bytes);
}

// The rows' values from their statistics (the row divided by its sum when normalising):
// loss = -max(log p_label, log_clip); brier = sum_c (p_c - [c = y])^2 = sum_c p_c^2 - 2 p_y + 1;
// the calibration bin floor(top * n_bins), the top probability 1 in the last bin. A row is
// invalid with a value outside [0, hi] (hi = 1, or the largest double when normalising) or a
// sum off 1 by more than tol (normalising: not positive and finite); a NaN makes the sum NaN,
// which fails both. Its bin is -1; returns the first such row, or -1.
template <bool Normalize>
int64_t row_values(int64_t n, double tol, double log_clip, double n_bins,
                   const double* __restrict low, const double* __restrict sums,
                   const double* __restrict truths, const double* __restrict squares_in,
                   double* __restrict tops, double* __restrict loss, double* __restrict brier,
                   double* __restrict bins) {
  constexpr double hi = Normalize ? std::numeric_limits<double>::max() : 1.0;
  double invalid = 0.0;  // a count in a double: GCC vectorises no bool-to-integer select here
#pragma omp simd reduction(+ : invalid)
  for (int64_t j = 0; j < n; ++j) {
    const double sum = sums[j];
    // & rather than &&: no short-circuit branches in the vectorised loop
    const bool sum_ok = Normalize ? (sum > 0) & (sum <= hi) : std::fabs(sum - 1.0) <= tol;
    const bool valid = (low[j] >= 0) & (tops[j] <= hi) & sum_ok;
    invalid += valid ? 0.0 : 1.0;
    // normalising, the row / sum: squares scale by 1 / sum^2
    const double d = Normalize ? sum : 1.0;
    const double truth = Normalize ? truths[j] / d : truths[j];
    const double top = Normalize ? tops[j] / d : tops[j];
    const double squares = Normalize ? squares_in[j] / (d * d) : squares_in[j];
    const double log_true = vlog(valid ? truth : 1.0);  // truth in [0, 1]: log 0 = -inf
    loss[j] = -(log_true > log_clip ? log_true : log_clip);
    brier[j] = squares - 2.0 * truth + 1.0;
    tops[j] = top;
    const double b = std::floor(top * n_bins);  // top >= 0 in a valid row
    bins[j] = valid ? (b < n_bins - 1.0 ? b : n_bins - 1.0) : -1.0;
  }
  if (invalid == 0.0) return -1;
  int64_t j = 0;
  while (bins[j] >= 0.0) ++j;
  return j;
}

// Rows [first, first + m) into state (zeroed here); returns -1 or the first invalid row.
template <typename T, typename L>
int64_t score_rows(const T* const* cols, int64_t C, int64_t first, int64_t m, const L* codes,
                   const int64_t* code_class, const double* weights, double tol, bool normalize,
                   double log_clip, int64_t n_bins, double* loss_out, double* state) {
  for (int64_t s = 0; s < kScoreTotals + 3 * C + 4 * n_bins; ++s) state[s] = 0.0;
  double* totals = state;
  double* class_rows = state + kScoreTotals;
  double* class_weight = class_rows + C;
  double* class_loss = class_weight + C;
  double* bin_rows = class_loss + C;
  double* bin_weight = bin_rows + n_bins;
  double* bin_hits = bin_weight + n_bins;
  double* bin_conf = bin_hits + n_bins;
  double loss_sum = 0, hits = 0, brier = 0, weight_sum = 0, n_inf = 0;
  Rows r;
  int64_t labels[kBlock];
  for (int64_t i0 = first; i0 < first + m; i0 += kBlock) {
    const int64_t n = first + m - i0 < kBlock ? first + m - i0 : kBlock;
    // the block's class indices: the codes themselves, or the classes of the codes
    if (code_class) {
      for (int64_t j = 0; j < n; ++j) labels[j] = code_class[codes[i0 + j]];
    } else {
      for (int64_t j = 0; j < n; ++j) labels[j] = static_cast<int64_t>(codes[i0 + j]);
    }
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) lane_stats<T, true>(cols, C, i0, j, kLanes, labels, r);
    if (j < n) lane_stats<T, false>(cols, C, i0, j, n - j, labels, r);
    const double bins = static_cast<double>(n_bins);
    const int64_t bad =
        normalize ? row_values<true>(n, tol, log_clip, bins, r.low, r.sum, r.truth, r.squares,
                                     r.top, r.loss, r.brier, r.bin)
                  : row_values<false>(n, tol, log_clip, bins, r.low, r.sum, r.truth, r.squares,
                                      r.top, r.loss, r.brier, r.bin);
    if (bad >= 0) return i0 + bad;
    // the sums in row order: the same at every SIMD level and thread count
    for (j = 0; j < n; ++j) {
      const int64_t i = i0 + j;
      const int64_t y = labels[j];
      const double loss = r.loss[j];
      loss_out[i] = loss;
      const double w = weights ? weights[i] : 1.0;
      const double hit = w * r.hit[j];
      const double wloss = w == 0.0 ? 0.0 : w * loss;  // a weight 0 removes even an infinite loss
      loss_sum += wloss;
      hits += hit;
      brier += w * r.brier[j];
      weight_sum += w;
      n_inf += std::isinf(loss) ? 1.0 : 0.0;
      class_rows[y] += 1.0;
      class_weight[y] += w;
      class_loss[y] += wloss;
      const int64_t b = static_cast<int64_t>(r.bin[j]);
      bin_rows[b] += 1.0;
      bin_weight[b] += w;
      bin_hits[b] += hit;
      bin_conf[b] += w * r.top[j];
    }
  }
  totals[0] += loss_sum;
  totals[1] += hits;
  totals[2] += brier;
  totals[3] += weight_sum;
  totals[4] += static_cast<double>(m);
  totals[5] += n_inf;
  return -1;
}

}  // namespace

template <typename T, typename L>
int64_t score_slices(const T* const* cols, int64_t C, int64_t m, const L* codes,
                     const int64_t* code_class, const double* weights, double tol,
                     bool normalize, double log_clip, int64_t n_bins, int64_t slice_rows,
                     double* loss_out, double* states, int64_t* invalid) {
  const int64_t n_slices = (m + slice_rows - 1) / slice_rows;
  const int64_t size = kScoreTotals + 3 * C + 4 * n_bins;
  for (int64_t s = 0; s < n_slices; ++s) {
    const int64_t first = s * slice_rows;
    const int64_t rows = m - first < slice_rows ? m - first : slice_rows;
    invalid[s] = score_rows<T, L>(cols, C, first, rows, codes, code_class, weights, tol,
                                  normalize, log_clip, n_bins, loss_out, states + s * size);
  }
  for (int64_t s = 0; s < n_slices; ++s)
    if (invalid[s] >= 0) return invalid[s];
  return -1;
}

#define CROSSENT_SCORE_SLICES(T, L)                                                            \
  template int64_t score_slices<T, L>(const T* const*, int64_t, int64_t, const L*,             \
                                      const int64_t*, const double*, double, bool, double,    \
                                      int64_t, int64_t, double*, double*, int64_t*);
CROSSENT_SCORE_SLICES(float, int32_t)
CROSSENT_SCORE_SLICES(float, int64_t)
CROSSENT_SCORE_SLICES(double, int32_t)
CROSSENT_SCORE_SLICES(double, int64_t)
#undef CROSSENT_SCORE_SLICES

CROSSENT_LEVEL_END
