// A row's log-sum-exp as the NumPy reference computes it, in scalar float64: for rows the SIMD
// path does not take (a maximum that is not finite) and for the scalar kernels.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "level.hpp"

CROSSENT_LEVEL_BEGIN

// shift = the row maximum (NaN if any entry is NaN, as np.max), or 0 where it is not finite;
// log_s = log sum_c exp(x_c - shift), so lse = shift + log_s and log p_c = (x_c - shift) - log_s.
template <typename T>
inline void shifted_log_sum_exp(const T* x, int64_t C, double* shift, double* log_s) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < C; ++c) {
    const double xc = static_cast<double>(x[c]);
    if (std::isnan(xc) || std::isnan(m)) m = std::nan("");
    else if (xc > m) m = xc;
  }
  const double sh = std::isfinite(m) ? m : 0.0;
  double s = 0.0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(static_cast<double>(x[c]) - sh);
  *shift = sh;
  *log_s = std::log(s);
}

CROSSENT_LEVEL_END
