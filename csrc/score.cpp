// Scoring probability predictions in one pass over each row (see score.hpp).
#include "score.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace crossent {

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
  // Rows go in blocks: each class column is read contiguously (vectorised over rows) into
  // per-row running top, argmax, sum and sum of squares that stay in L1.
  constexpr int64_t kBlock = 256;
  double top[kBlock], sum[kBlock], squares[kBlock];
  int64_t arg[kBlock];
  for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
    const int64_t n = std::min(kBlock, m - i0);
    for (int64_t j = 0; j < n; ++j) {
      top[j] = -std::numeric_limits<double>::infinity();
      sum[j] = squares[j] = 0.0;
      arg[j] = 0;
    }
    bool ok = true;
    for (int64_t k = 0; k < C; ++k) {
      const T* column = p + k * m + i0;
      for (int64_t j = 0; j < n; ++j) {
        const double v = static_cast<double>(column[j]);
        ok &= normalize ? (v >= 0 && v <= std::numeric_limits<double>::max())
                        : (v >= 0 && v <= 1);  // NaN fails both
        sum[j] += v;
        squares[j] += v * v;
        const bool above = v > top[j];  // strict: the first class reaching the top is the argmax
        top[j] = above ? v : top[j];
        arg[j] = above ? k : arg[j];
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      const bool row_ok = normalize ? sum[j] > 0 : std::fabs(sum[j] - 1.0) <= tol;
      ok &= row_ok;
    }
    if (!ok) {  // the first invalid row of the block
      for (int64_t j = 0; j < n; ++j) {
        bool row_ok = normalize ? sum[j] > 0 : std::fabs(sum[j] - 1.0) <= tol;
        for (int64_t k = 0; k < C && row_ok; ++k) {
          const double v = static_cast<double>(p[k * m + i0 + j]);
          row_ok = normalize ? (v >= 0 && v <= std::numeric_limits<double>::max())
                             : (v >= 0 && v <= 1);
        }
        if (!row_ok) return i0 + j;
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = i0 + j;
      const int64_t y = labels[i];
      double p_true = static_cast<double>(p[y * m + i]), t = top[j], sq = squares[j];
      if (normalize) {  // row / sum: squares scale by 1 / sum^2
        p_true /= sum[j];
        t /= sum[j];
        sq /= sum[j] * sum[j];
      }
      const double loss = -std::fmax(std::log(p_true), log_clip);
      loss_out[i] = loss;
      const double w = weights ? weights[i] : 1.0;
      const double hit = arg[j] == y ? w : 0.0;
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
