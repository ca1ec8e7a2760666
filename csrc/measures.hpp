// Information measures of probability rows (crossent/measures.py is the readable spec), with the
// rows' validation fused into the same read: per row the measure, the sums of p and q (float64)
// and the count of entries outside [0, 1] (NaN included); the caller checks those and, when any
// is off, lets the NumPy path name the offending entry.
#pragma once
#include <cstdint>

#include "level.hpp"

CROSSENT_LEVEL_BEGIN

enum MeasureKind : int { kEntropy = 0, kCrossEntropy = 1, kKL = 2, kJS = 3 };

// p, q: [N, C] C-contiguous (q unused, may be nullptr, for the entropy). value, sum_p: [N];
// sum_q: [N] or nullptr. Returns the number of entries outside [0, 1] (NaN included), plus the
// number of KL terms p log(p/q) whose ratio overflowed (rows the caller recomputes in float64).
template <typename T>
int64_t measure_rows(int kind, const T* p, const T* q, int64_t n_rows, int64_t n_classes,
                     double* value, double* sum_p, double* sum_q);

CROSSENT_LEVEL_END
