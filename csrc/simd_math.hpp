// Branch-free exponentials that GCC vectorises inside `#pragma omp simd` loops.
//
// exp(x) = 2^k exp(r), x = k ln2 + r, |r| <= ln2/2, k = round(x / ln2):
//  - k by the "shifter" trick (adding 1.5 * 2^52, resp. 1.5 * 2^23, rounds to an integer);
//  - r = x - k ln2_hi - k ln2_lo, ln2 split in two so k ln2_hi is exact;
//  - exp(r) by its Taylor polynomial, Horner's rule (double: degree 13, |r|^14/14! < 5e-18);
//  - double: 2^k = 2^k1 2^k2 with k1 = round(k/2), both powers built from their exponent bits,
//    so results that overflow give inf and results that underflow go through the subnormals.
// double inputs are clamped to [-746, 710] first, where the result is already 0 or inf:
// -inf -> 0, +inf -> inf; a NaN fails both comparisons and stays NaN.
#pragma once
#include <cstdint>
#include <cstring>

namespace crossent {

#define CROSSENT_INLINE inline __attribute__((always_inline))

CROSSENT_INLINE double bits_to_double(uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}
CROSSENT_INLINE uint64_t double_to_bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}
CROSSENT_INLINE float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
CROSSENT_INLINE uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// 2^k for an integer-valued double k in [-1022, 1023]: the integer k + 1023 sits in the low
// mantissa bits of k + 1023 + 2^52; shifted left by 52 it becomes the exponent field.
CROSSENT_INLINE double pow2_d(double k) {
  return bits_to_double(double_to_bits(k + (1023.0 + 0x1p52)) << 52);
}

CROSSENT_INLINE double exp_d(double x) {
  constexpr double kShift = 0x1.8p52;
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 32 significant bits
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  x = x < -746.0 ? -746.0 : x;
  x = x > 710.0 ? 710.0 : x;
  const double k = (x * kLog2e + kShift) - kShift;
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const double k1 = (k * 0.5 + kShift) - kShift;
  return p * pow2_d(k1) * pow2_d(k - k1);
}

// float: fewer steps, as the float32 softmax rows need: 2^k is built in one step from the
// rounding sum itself (k + 127 sits in its low mantissa bits), which needs k >= -126, so
// arguments below -87.33 (results below 2^-126, i.e. subnormal) return 0 instead of a
// subnormal (absolute error < 1.2e-38); above ln(FLT_MAX) = 88.72 the result is inf, and it
// may already be inf within 0.35 below that. Degree-6 Taylor polynomial: |r|^7/7! < 1.2e-7.
CROSSENT_INLINE float exp_f(float x) {
  constexpr float kShift = 0x1.8p23f + 127.0f;
  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2Hi = 0.693145751953125f;  // 16 significant bits
  constexpr float kLn2Lo = 1.428606765330187045e-06f;
  constexpr float kLow = -87.33f;
  const float xc = x < kLow ? kLow : (x > 88.7228f ? 88.7228f : x);
  const float t = xc * kLog2e + kShift;  // = round(xc / ln2) + 127 + 1.5 * 2^23
  const float k = t - kShift;
  const float r = (xc - k * kLn2Hi) - k * kLn2Lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float e = p * bits_to_float(float_to_bits(t) << 23);  // p 2^k
  return x < kLow ? 0.0f : e;  // -inf -> 0; NaN fails the compare and stays NaN
}

CROSSENT_INLINE double fast_exp(double x) { return exp_d(x); }
CROSSENT_INLINE float fast_exp(float x) { return exp_f(x); }

}  // namespace crossent
