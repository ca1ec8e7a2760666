// Scoring probability predictions: every metric of crossent.evaluation as additive sums.
// Specification: ScoreAccumulator._chunk_reference in crossent/evaluation/metrics.py.
#pragma once
#include <cstdint>

#include "level.hpp"

namespace crossent {
// Number of leading totals in a score state (see score_state_layout in metrics.py):
// weighted loss sum, weighted hits, weighted Brier sum, weight sum, rows, infinite-loss rows.
constexpr int64_t kScoreTotals = 6;
}  // namespace crossent

CROSSENT_LEVEL_BEGIN

// p: class-major probabilities, C rows of m values (p[k * m + i] is class k of row i).
// labels: m class indices in [0, C). weights: m finite non-negative weights, or nullptr (all 1).
// Row i is valid when every p is in [0, 1] and |sum - 1| <= tol (normalize: every p finite and
// >= 0 and a positive sum, the row then being divided by its sum). The loss of a row is
// -max(log p_label, log_clip) (log_clip = -inf: no clip), written to loss_out[i]; the row's
// sums are added to state = [totals(6) | class rows, weights, losses (C each) |
// bin rows, weights, hits, confidences (n_bins each)]. Returns -1, or the first invalid row
// (the state then holds the rows before it only partly: the caller discards it).
template <typename T>
int64_t score_probs(const T* p, int64_t C, int64_t m, const int64_t* labels,
                    const double* weights, double tol, bool normalize, double log_clip,
                    int64_t n_bins, double* loss_out, double* state);

CROSSENT_LEVEL_END
