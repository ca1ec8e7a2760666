// The vectorised math layer under every kernel: branch-free exp, log, log1p, log_sigmoid,
// softplus and tanh in float and double that GCC vectorises inside `#pragma omp simd` loops
// (every branch is a select). float inputs are computed in float, double inputs in double.
// Each translation unit that uses them is compiled once per SIMD level (see kernel_table.hpp),
// so the same code runs as AVX-512, AVX2 + FMA or baseline SSE2 vectors.
//
// Maximum errors over the whole domain, tested against mpmath in tests/test_simd_math.py at
// every level (ulp: units in the last place of the exact result, in the result's format):
//   exp         float 2 ulp, double 2 ulp; results below the smallest normal are the
//               subnormals (within 1 subnormal ulp), overflow gives +inf; -inf -> 0.
//   exp_nonpos  for x <= 0 only (the shifted logits of a softmax): the same polynomial with
//               one scaling and no overflow clamp; results below the smallest normal
//               (x < -87.33 float, -708.39 double) flush to 0 (absolute error < 2^-126,
//               resp. 2^-1022).
//   log         float 1 ulp, double 1 ulp; subnormal arguments exact-range; 0 -> -inf,
//               x < 0 -> NaN, +inf -> +inf.
//   log_pos     log for x > 0 finite only (the same values there), without the special cases.
//   log1p       float 2 ulp, double 2 ulp; -1 -> -inf, x < -1 -> NaN.
//   log_sigmoid, softplus   float 2 ulp, double 2 ulp where the result is a normal number;
//               below that (softplus(x) for x < -87.33 float, -708.39 double) absolute
//               error < 2^-126, resp. 2^-1022.
//   tanh        float 2 ulp, double 2 ulp; odd, tanh(+-0) = +-0.
//   pow_unit, pow1m   u^g and (1-p)^g for u, p in [0, 1], g >= 0, through exp(g log u) and
//               exp(g log1p(-p)): (3 + 2 |g log u|) ulp; results below 1.01 times the
//               smallest normal may flush to 0 (exp_nonpos's threshold).
// NaN in gives NaN out everywhere.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

#include "level.hpp"

CROSSENT_LEVEL_BEGIN

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

// a * b + c, fused (one rounding) where the level has FMA. Every kernel unit is compiled with
// -ffp-contract=off, so the compiler fuses nothing by itself: a value is computed by the same
// operations whether or not a gradient is asked for.
CROSSENT_INLINE float mad(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}
CROSSENT_INLINE double mad(double a, double b, double c) {
#ifdef __FMA__
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

// ------------------------------------------------------------------ exp
// exp(x) = 2^k exp(r), x = k ln2 + r, |r| <= ln2/2, k = round(x / ln2) by the "shifter" trick
// (adding 1.5 * 2^52, resp. 1.5 * 2^23, rounds to an integer); r = x - k ln2_hi - k ln2_lo with
// ln2 split in two so k ln2_hi is exact; exp(r) by a polynomial fitted to exp on
// [-ln2/2, ln2/2] (Chebyshev fit, mpmath.chebyfit: float degree 6, |error| < 2e-9; double
// degree 12, |error| < 5e-20); 2^k from its exponent bits.

// 2^k for an integer-valued double k in [-1022, 1023]: k + 1023 sits in the low mantissa bits
// of k + 1023 + 2^52; shifted left by 52 it becomes the exponent field.
CROSSENT_INLINE double pow2_d(double k) {
  return bits_to_double(double_to_bits(k + (1023.0 + 0x1p52)) << 52);
}
// 2^k for an integer-valued float k in [-126, 127], likewise.
CROSSENT_INLINE float pow2_f(float k) {
  return bits_to_float(float_to_bits(k + (127.0f + 0x1p23f)) << 23);
}

CROSSENT_INLINE double exp_poly_d(double r) {
  double p = 2.0921579964950300073e-9;
  p = mad(p, r, 2.5114869528657764941e-8);
  p = mad(p, r, 2.7557251904174912593e-7);
  p = mad(p, r, 2.7557224958392622686e-6);
  p = mad(p, r, 2.480158735011079562e-5);
  p = mad(p, r, 1.9841269909217101366e-4);
  p = mad(p, r, 1.388888888887188822e-3);
  p = mad(p, r, 8.3333333333095270794e-3);
  p = mad(p, r, 4.1666666666666692193e-2);
  p = mad(p, r, 1.6666666666666702412e-1);
  p = mad(p, r, 0.49999999999999999989);
  p = mad(p, r, 0.99999999999999999847);
  return mad(p, r, 1.0);
}

CROSSENT_INLINE float exp_poly_f(float r) {
  float p = 1.3941108433972674608e-3f;
  p = mad(p, r, 8.375126398153335682e-3f);
  p = mad(p, r, 4.1666352896775156786e-2f);
  p = mad(p, r, 1.6666415514653275427e-1f);
  p = mad(p, r, 0.50000000471177576744f);
  p = mad(p, r, 1.0000000377162138425f);
  return mad(p, r, 1.0f);
}

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2HiD = 6.93147180369123816490e-01;  // 32 significant bits
constexpr double kLn2LoD = 1.90821492927058770002e-10;
constexpr float kLn2HiF = 0.693145751953125f;  // 16 significant bits
constexpr float kLn2LoF = 1.428606765330187045e-06f;

// Full range. double: x clamped to [-746, 710] (the result is already 0 or inf there), 2^k as
// 2^k1 2^(k-k1) so subnormal results are formed with one rounding and overflow gives inf.
CROSSENT_INLINE double exp_d(double x) {
  constexpr double kShift = 0x1.8p52;
  double xc = x < -746.0 ? -746.0 : x;
  xc = xc > 710.0 ? 710.0 : xc;
  const double k = (xc * kLog2e + kShift) - kShift;
  const double r = (xc - k * kLn2HiD) - k * kLn2LoD;
  const double k1 = (k * 0.5 + kShift) - kShift;
  return exp_poly_d(r) * pow2_d(k1) * pow2_d(k - k1);  // NaN stays NaN through every step
}

CROSSENT_INLINE float exp_f(float x) {
  constexpr float kShift = 0x1.8p23f;
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  const float k = (xc * static_cast<float>(kLog2e) + kShift) - kShift;
  const float r = (xc - k * kLn2HiF) - k * kLn2LoF;
  const float k1 = (k * 0.5f + kShift) - kShift;
  return exp_poly_f(r) * pow2_f(k1) * pow2_f(k - k1);
}

// x <= 0 (or NaN): one scaling, results below the smallest normal flush to 0.
CROSSENT_INLINE double exp_nonpos_d(double x) {
  constexpr double kShift = 0x1.8p52 + 1023.0;
  constexpr double kLow = -708.39;
  const double xc = x < kLow ? kLow : x;
  const double t = xc * kLog2e + kShift;  // = round(xc / ln2) + 1023 + 1.5 * 2^52
  const double k = t - kShift;
  const double r = (xc - k * kLn2HiD) - k * kLn2LoD;
  const double e = exp_poly_d(r) * bits_to_double(double_to_bits(t) << 52);
  return x < kLow ? 0.0 : e;  // -inf -> 0; NaN fails the compare and stays NaN
}

CROSSENT_INLINE float exp_nonpos_f(float x) {
  constexpr float kShift = 0x1.8p23f + 127.0f;
  constexpr float kLow = -87.33f;
  const float xc = x < kLow ? kLow : x;
  const float t = xc * static_cast<float>(kLog2e) + kShift;
  const float k = t - kShift;
  const float r = (xc - k * kLn2HiF) - k * kLn2LoF;
  const float e = exp_poly_f(r) * bits_to_float(float_to_bits(t) << 23);
  return x < kLow ? 0.0f : e;
}

// ------------------------------------------------------------------ log, log1p
// x = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)); with s = f / (2 + f) (so 1 + f = (1+s)/(1-s)):
//   log(1 + f) = 2 atanh(s) = 2s + s R(s^2),  R(z) = 2z/3 + 2z^2/5 + ... (|s| < 0.1716),
// written as f - f^2/2 + s (f^2/2 + R) (since 2s = f - s f), whose large terms are exact.
// R is its Taylor series (truncation below 1e-9 relative for float, 1e-19 for double).
CROSSENT_INLINE float log1p_core_f(float f, float k) {
  const float s = f / (2.0f + f);
  const float z = s * s;
  float R = 2.0f / 9.0f;
  R = mad(R, z, 2.0f / 7.0f);
  R = mad(R, z, 2.0f / 5.0f);
  R = mad(R, z, 2.0f / 3.0f);
  R = R * z;
  const float hfsq = 0.5f * f * f;
  return k * kLn2HiF + ((s * (hfsq + R) + k * kLn2LoF) - hfsq + f);
}

CROSSENT_INLINE double log1p_core_d(double f, double k) {
  const double s = f / (2.0 + f);
  const double z = s * s;
  double R = 2.0 / 21.0;
  R = mad(R, z, 2.0 / 19.0);
  R = mad(R, z, 2.0 / 17.0);
  R = mad(R, z, 2.0 / 15.0);
  R = mad(R, z, 2.0 / 13.0);
  R = mad(R, z, 2.0 / 11.0);
  R = mad(R, z, 2.0 / 9.0);
  R = mad(R, z, 2.0 / 7.0);
  R = mad(R, z, 2.0 / 5.0);
  R = mad(R, z, 2.0 / 3.0);
  R = R * z;
  const double hfsq = 0.5 * f * f;
  return k * kLn2HiD + ((s * (hfsq + R) + k * kLn2LoD) - hfsq + f);
}

// Splits x > 0 (normal) into k and f: adding 1 - sqrt(1/2) (in bits) to the exponent moves the
// mantissa range [1, 2) to [sqrt(1/2), sqrt(2)).
// log_pos: x > 0 finite (normal or subnormal) only, other x give unspecified values (the
// callers mask them); log: every x, with the special values.
CROSSENT_INLINE float log_pos_f(float x) {
  const bool sub = x < 0x1p-126f;  // subnormal: scale by 2^25
  const float xs = sub ? x * 0x1p25f : x;
  const uint32_t u = float_to_bits(xs) + (0x3f800000u - 0x3f3504f3u);
  const float k = static_cast<float>(static_cast<int32_t>(u >> 23) - 127) - (sub ? 25.0f : 0.0f);
  const float f = bits_to_float((u & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
  return log1p_core_f(f, k);
}

CROSSENT_INLINE float log_f(float x) {
  const float r = log_pos_f(x);
  constexpr float inf = std::numeric_limits<float>::infinity();
  float out = x == 0.0f ? -inf : r;
  out = x < 0.0f ? std::numeric_limits<float>::quiet_NaN() : out;
  out = x == inf ? inf : out;
  return x != x ? x : out;
}

CROSSENT_INLINE double log_pos_d(double x) {
  const bool sub = x < 0x1p-1022;
  const double xs = sub ? x * 0x1p54 : x;
  const uint64_t u = double_to_bits(xs) + (0x3ff0000000000000ull - 0x3fe6a09e667f3bcdull);
  // the exponent field e = u >> 52 (< 2^12) as a double: 2^52 + e has e in its low mantissa
  // bits (no int64 -> double conversion, which AVX2 and SSE2 lack as vector instructions)
  const double k = (bits_to_double((u >> 52) | 0x4330000000000000ull) - (0x1p52 + 1023.0)) -
                   (sub ? 54.0 : 0.0);
  const double f =
      bits_to_double((u & 0x000fffffffffffffull) + 0x3fe6a09e667f3bcdull) - 1.0;
  return log1p_core_d(f, k);
}

CROSSENT_INLINE double log_d(double x) {
  const double r = log_pos_d(x);
  constexpr double inf = std::numeric_limits<double>::infinity();
  double out = x == 0.0 ? -inf : r;
  out = x < 0.0 ? std::numeric_limits<double>::quiet_NaN() : out;
  out = x == inf ? inf : out;
  return x != x ? x : out;
}

// log1p(x) = log(u) + (x - (u - 1)) / u with u = 1 + x rounded: the second term is the
// first-order correction for the rounding of u (Goldberg 1991), exact u - 1 by Sterbenz.
CROSSENT_INLINE float log1p_f(float x) {
  const float u = 1.0f + x;
  const bool edge = u == 0.0f || u == std::numeric_limits<float>::infinity();
  const float c = edge ? 0.0f : (x - (u - 1.0f)) / (edge ? 1.0f : u);
  return log_f(u) + c;
}

CROSSENT_INLINE double log1p_d(double x) {
  const double u = 1.0 + x;
  const bool edge = u == 0.0 || u == std::numeric_limits<double>::infinity();
  const double c = edge ? 0.0 : (x - (u - 1.0)) / (edge ? 1.0 : u);
  return log_d(u) + c;
}

// log1p(t) for t in [0, 1] (or NaN), exactly reduced without log1p's correction division:
// 1 + t < sqrt(2): k = 0, f = t (exact); otherwise k = 1, f = (1 + t)/2 - 1 = (t - 1)/2.
// f and k are selected bitwise: with a plain select GCC if-converts the two cases into two
// masked copies of the core, dividing twice.
CROSSENT_INLINE float log1p_unit_f(float t) {
  const uint32_t hi = t >= 0.41421356f ? ~0u : 0u;
  const float f = bits_to_float((float_to_bits((t - 1.0f) * 0.5f) & hi) | (float_to_bits(t) & ~hi));
  return log1p_core_f(f, bits_to_float(float_to_bits(1.0f) & hi));
}

CROSSENT_INLINE double log1p_unit_d(double t) {
  const uint64_t hi = t >= 0.41421356237309503 ? ~0ull : 0ull;
  const double f = bits_to_double((double_to_bits((t - 1.0) * 0.5) & hi) | (double_to_bits(t) & ~hi));
  return log1p_core_d(f, bits_to_double(double_to_bits(1.0) & hi));
}

// ------------------------------------------------------------------ sigmoid family
// log(1 + e^(-|x|)), the shared term of log sigma(x) = min(x, 0) - L and
// softplus(x) = log(1 + e^x) = max(x, 0) + L.
CROSSENT_INLINE float softplus_tail_f(float x) {
  return log1p_unit_f(exp_nonpos_f(-(x < 0.0f ? -x : x)));
}
CROSSENT_INLINE double softplus_tail_d(double x) {
  return log1p_unit_d(exp_nonpos_d(-(x < 0.0 ? -x : x)));
}

CROSSENT_INLINE float log_sigmoid_f(float x) {
  return (x < 0.0f ? x : 0.0f) - softplus_tail_f(x);
}
CROSSENT_INLINE double log_sigmoid_d(double x) { return (x < 0.0 ? x : 0.0) - softplus_tail_d(x); }
CROSSENT_INLINE float softplus_f(float x) { return (x > 0.0f ? x : 0.0f) + softplus_tail_f(x); }
CROSSENT_INLINE double softplus_d(double x) { return (x > 0.0 ? x : 0.0) + softplus_tail_d(x); }

// ------------------------------------------------------------------ tanh
// |x| < 0.55: tanh(x) = x P(x^2), P fitted to tanh(x)/x (mpmath.chebyfit: float degree 4 in
// x^2, |error| < 4e-8; double degree 10, |error| < 2e-17). Otherwise
// tanh|x| = 1 - 2 / (e^(2|x|) + 1), >= 0.5 there, so the subtraction loses at most one bit;
// then the sign of x. e^(2|x|) = inf gives 1.
CROSSENT_INLINE float tanh_f(float x) {
  const float a = x < 0.0f ? -x : x;
  const float z = x * x;
  float p = 0.016310403867162955125f;
  p = mad(p, z, -0.052586260038930357962f);
  p = mad(p, z, 0.13318818780501929704f);
  p = mad(p, z, -0.33332791480236107179f);
  p = mad(p, z, 0.99999996729807167721f);
  const float big = 1.0f - 2.0f / (exp_f(2.0f * a) + 1.0f);
  const float small = x * p;
  return a < 0.55f ? small : (x < 0.0f ? -big : big);
}

CROSSENT_INLINE double tanh_d(double x) {
  const double a = x < 0.0 ? -x : x;
  const double z = x * x;
  double p = 0.000050835285960847209467;
  p = mad(p, z, -0.00021000824758639779421);
  p = mad(p, z, 0.00057893801967827069307);
  p = mad(p, z, -0.0014531414927844132309);
  p = mad(p, z, 0.0035917022693627031396);
  p = mad(p, z, -0.0088631919608211257048);
  p = mad(p, z, 0.021869485742840416514);
  p = mad(p, z, -0.053968253863418386513);
  p = mad(p, z, 0.13333333333131017855);
  p = mad(p, z, -0.33333333333331807227);
  p = mad(p, z, 0.99999999999999998093);
  const double big = 1.0 - 2.0 / (exp_d(2.0 * a) + 1.0);
  const double small = x * p;
  return a < 0.55 ? small : (x < 0.0 ? -big : big);
}

// ------------------------------------------------------------------ powers of [0, 1]
// u^g for u in [0, 1], g >= 0: exp(g log u) (g log u <= 0, so the exp needs no overflow
// clamp); 0^g = 0 for g > 0 and u^0 = 1 (0^0 = 1, as std::pow). (1-p)^g for p in [0, 1]:
// exp(g log1p(-p)), log1p keeping the digits of 1 - p for small p (the focal losses'
// modulating factor). Relative error: the exp's 2 ulp plus the log's relative error carried
// through g log u, i.e. about (2 + 2 |g log u|) ulp (|g log u| < 87.3 float, 708.4 double
// where the result is a normal number); results below the smallest normal flush to 0.
CROSSENT_INLINE float pow_unit_f(float u, float g) {
  return g == 0.0f ? 1.0f : exp_nonpos_f(g * log_f(u));
}
CROSSENT_INLINE double pow_unit_d(double u, double g) {
  return g == 0.0 ? 1.0 : exp_nonpos_d(g * log_d(u));
}
CROSSENT_INLINE float pow1m_f(float p, float g) {
  return g == 0.0f ? 1.0f : exp_nonpos_f(g * log1p_f(-p));
}
CROSSENT_INLINE double pow1m_d(double p, double g) {
  return g == 0.0 ? 1.0 : exp_nonpos_d(g * log1p_d(-p));
}

// ------------------------------------------------------------------ overloads for templates
CROSSENT_INLINE double fast_exp(double x) { return exp_d(x); }
CROSSENT_INLINE float fast_exp(float x) { return exp_f(x); }
CROSSENT_INLINE double exp_nonpos(double x) { return exp_nonpos_d(x); }
CROSSENT_INLINE float exp_nonpos(float x) { return exp_nonpos_f(x); }
CROSSENT_INLINE double vlog(double x) { return log_d(x); }
CROSSENT_INLINE float vlog(float x) { return log_f(x); }
CROSSENT_INLINE double vlog_pos(double x) { return log_pos_d(x); }
CROSSENT_INLINE float vlog_pos(float x) { return log_pos_f(x); }
CROSSENT_INLINE double vlog1p(double x) { return log1p_d(x); }
CROSSENT_INLINE float vlog1p(float x) { return log1p_f(x); }
CROSSENT_INLINE double vlog1p_unit(double x) { return log1p_unit_d(x); }
CROSSENT_INLINE float vlog1p_unit(float x) { return log1p_unit_f(x); }
CROSSENT_INLINE double vlog_sigmoid(double x) { return log_sigmoid_d(x); }
CROSSENT_INLINE float vlog_sigmoid(float x) { return log_sigmoid_f(x); }
CROSSENT_INLINE double vsoftplus(double x) { return softplus_d(x); }
CROSSENT_INLINE float vsoftplus(float x) { return softplus_f(x); }
CROSSENT_INLINE double vtanh(double x) { return tanh_d(x); }
CROSSENT_INLINE float vtanh(float x) { return tanh_f(x); }
CROSSENT_INLINE double vpow_unit(double u, double g) { return pow_unit_d(u, g); }
CROSSENT_INLINE float vpow_unit(float u, float g) { return pow_unit_f(u, g); }
CROSSENT_INLINE double vpow1m(double p, double g) { return pow1m_d(p, g); }
CROSSENT_INLINE float vpow1m(float p, float g) { return pow1m_f(p, g); }

CROSSENT_LEVEL_END
