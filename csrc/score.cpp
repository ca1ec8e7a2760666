// Scoring probability predictions in one pass over each row (see score.hpp).
#include "score.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

// The block pass is compiled for AVX-512, AVX2 and baseline, chosen at load time (as in
// softmax_ce.cpp).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(CROSSENT_NO_CLONES)
#define CROSSENT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CROSSENT_CLONES
#endif

namespace crossent {
namespace {

constexpr int64_t kBlock = 256;

// One block of n <= kBlock rows: per row, the top probability and its class (the first class
// reaching it: argmax), the lowest, the sum, the sum of squares and the label's probability (a
// NaN, which max and min may skip, still makes the sum NaN). Per-row arrays and selects instead
// of branches, no reduction across rows: the loop over rows vectorises.
template <typename T>
CROSSENT_CLONES void block_pass(const T* __restrict p, int64_t C, int64_t m, int64_t n,
                                const int64_t* __restrict labels, double* __restrict top,
                                double* __restrict arg, double* __restrict low,
                                double* __restrict sum, double* __restrict squares,
                                double* __restrict truth) {
  for (int64_t j = 0; j < n; ++j) {
    top[j] = -std::numeric_limits<double>::infinity();
    low[j] = std::numeric_limits<double>::infinity();
    arg[j] = sum[j] = squares[j] = truth[j] = 0.0;
  }
  for (int64_t k = 0; k < C; ++k) {
    const T* __restrict column = p + k * m;
    const double class_k = static_cast<double>(k);
    for (int64_t j = 0; j < n; ++j) {
      const double v = static_cast<double>(column[j]);
      sum[j] += v;
      squares[j] += v * v;
      const bool above = v > top[j];  // strictly: a later class equal to the top is not argmax
      arg[j] = above ? class_k : arg[j];
      top[j] = above ? v : top[j];
      low[j] = std::min(low[j], v);
      truth[j] = labels[j] == k ? v : truth[j];
    }
  }
}

}  // namespace

template <typename T>
int64_t score_probs(const T* p, int64_t C, int64_t m, const int64_t* labels,
                    const double* weights, double tol, bool normalize, double log_clip,
                    int64_t n_bins, double* loss_out, double* state) {
  double* totals = state;
  double* class_rows = state + kScoreTotals;
  double* class_weight = class_rows + C;
  double* class_loss = class_weight + C;
  double* bin_rows = class_loss + C;
  double* bin_weight = bin_rows + n_bins;
  double* bin_hits = bin_weight + n_bins;
  double* bin_conf = bin_hits + n_bins;
  double loss_sum = 0, hits = 0, brier = 0, weight_sum = 0, n_inf = 0;
  double top[kBlock], arg[kBlock], low[kBlock], sum[kBlock], squares[kBlock], truth[kBlock];
  // Each value must be in [0, hi] (NaN fails): hi = 1, or any finite value when normalising.
  const double hi = normalize ? std::numeric_limits<double>::max() : 1.0;
  for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
    const int64_t n = std::min(kBlock, m - i0);
    block_pass<T>(p + i0, C, m, n, labels + i0, top, arg, low, sum, squares, truth);
    // Valid: every value in [0, hi] and the sum within tol of 1 (normalising: a positive finite
    // sum); a NaN makes the sum NaN, which fails both.
    for (int64_t j = 0; j < n; ++j) {
      const bool valid = low[j] >= 0 && top[j] <= hi &&
                         (normalize ? sum[j] > 0 && sum[j] <= hi : std::fabs(sum[j] - 1.0) <= tol);
      if (!valid) return i0 + j;
    }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = i0 + j;
      const int64_t y = labels[i];
      double p_true = truth[j], t = top[j], sq = squares[j];
      if (normalize) {  // row / sum: squares scale by 1 / sum^2
        p_true /= sum[j];
        t /= sum[j];
        sq /= sum[j] * sum[j];
      }
      const double log_true = std::log(p_true);  // p_true is a number: no NaN for fmax to skip
      const double loss = -(log_true > log_clip ? log_true : log_clip);
      loss_out[i] = loss;
      const double w = weights ? weights[i] : 1.0;
      const double hit = arg[j] == static_cast<double>(y) ? w : 0.0;
      // sum_c (p_c - [c = y])^2 = sum_c p_c^2 - 2 p_y + 1
      const double row_brier = sq - 2.0 * p_true + 1.0;
      const double wloss = w == 0.0 ? 0.0 : w * loss;  // a weight 0 removes even an infinite loss
      loss_sum += wloss;
      hits += hit;
      brier += w * row_brier;
      weight_sum += w;
      n_inf += std::isinf(loss) ? 1.0 : 0.0;
      class_rows[y] += 1.0;
      class_weight[y] += w;
      class_loss[y] += wloss;
      // bin floor(top * n_bins), the top probability 1 in the last bin
      const int64_t b = std::min<int64_t>(static_cast<int64_t>(t * n_bins), n_bins - 1);
      bin_rows[b] += 1.0;
      bin_weight[b] += w;
      bin_hits[b] += hit;
      bin_conf[b] += w * t;
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

template int64_t score_probs<float>(const float*, int64_t, int64_t, const int64_t*,
                                    const double*, double, bool, double, int64_t, double*,
                                    double*);
template int64_t score_probs<double>(const double*, int64_t, int64_t, const int64_t*,
                                     const double*, double, bool, double, int64_t, double*,
                                     double*);

}  // namespace crossent
