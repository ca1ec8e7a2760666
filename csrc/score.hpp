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

// cols: C class columns of m probabilities each (cols[k][i] is class k of row i). codes: m
// label codes; row i's class is code_class[codes[i]], or codes[i] itself when code_class is
// nullptr (either way in [0, C): the caller checks). weights: m finite non-negative weights, or
// nullptr (all 1). Row i is valid when every p is in [0, 1] and |sum - 1| <= tol (normalize:
// every p finite and >= 0 and a positive sum, the row then being divided by its sum). The loss
// of a row is -max(log p_label, log_clip) (log_clip = -inf: no clip), written to loss_out[i].
// The rows are scored in slices of slice_rows, on the calling thread (a reader of a file
// scores batches on the threads its decoder leaves free; OpenMP's spinning threads would take
// them): slice s's sums are written to states[s * S ...], S = 6 + 3 C + 4 n_bins: [totals(6) | class rows, weights,
// losses (C each) | bin rows, weights, hits, confidences (n_bins each)], each sum in row order,
// so the states do not depend on the threads. invalid[s] is -1, or the first invalid row of
// slice s (its state then holds the rows before it only partly: the caller discards it).
// Returns the first invalid row of all, or -1.
template <typename T, typename L>
int64_t score_slices(const T* const* cols, int64_t C, int64_t m, const L* codes,
                     const int64_t* code_class, const double* weights, double tol,
                     bool normalize, double log_clip, int64_t n_bins, int64_t slice_rows,
                     double* loss_out, double* states, int64_t* invalid);

CROSSENT_LEVEL_END
