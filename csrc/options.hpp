// Options of the kernels, shared by every SIMD level and the bindings (plain data, no code).
#pragma once
#include <cstdint>

namespace crossent {

// Softmax cross-entropy (index and dense targets).
struct SoftmaxCEOptions {
  const double* weight = nullptr;  // [C] class weights, or nullptr for all ones
  bool has_ignore = false;
  int64_t ignore_index = 0;
  double label_smoothing = 0.0;
  double z_loss = 0.0;
  double softcap = 0.0;  // 0 = no soft-capping
};

// The element-wise binary losses. weight / pos_weight: n elements each, or nullptr (all ones).
struct BinaryOptions {
  const double* weight = nullptr;
  const double* pos_weight = nullptr;
  double label_smoothing = 0.0;  // sigmoid BCE
  bool has_alpha = false;        // sigmoid focal: alpha_t = 1 without alpha
  double alpha = 0.25;
  double gamma = 2.0;
};

}  // namespace crossent
