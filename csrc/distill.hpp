// Divergences between two models' softmax distributions, row by row (distillation).
// Specification: crossent/_reference.py (softmax_divergence).
#pragma once
#include <cstdint>

namespace crossent {

enum class Divergence : int { kForwardKL = 0, kReverseKL = 1, kJensenShannon = 2 };

struct DivergenceOptions {
  Divergence kind = Divergence::kForwardKL;
  double beta = 0.5;          // the teacher's weight in the JSD mixture, in (0, 1)
  double temperature = 1.0;   // both distributions are softmax(logits / temperature)
  double hard_weight = 0.0;   // weight of the hard-label cross-entropy (of the raw logits)
  const uint8_t* where = nullptr;   // [N] rows that count, or nullptr (all)
  const int64_t* labels = nullptr;  // [N] class indices for the hard term (hard_weight > 0)
};

// Per row n: loss_out[n] = (1 - h) D(p_n, q_n) + h CE(logits_n, labels_n), with
// p = softmax(target_logits / T) (teacher), q = softmax(logits / T) (student), D the chosen
// divergence; rows outside `where` give 0. grad (if not nullptr; it may alias logits) =
// grad_scale * d loss_out[n] / d logits[n]. A row holding NaN or +inf, or with every logit
// -inf on either side, gives NaN (value and gradient).
template <typename T>
void softmax_divergence(const T* logits, const T* target_logits, int64_t n_rows,
                        int64_t n_classes, const DivergenceOptions& opt, double* loss_out,
                        T* grad, double grad_scale);

}  // namespace crossent
