// nll_loss and softmax focal loss on (N, C) rows. Specification: crossent/_reference.py.
#pragma once
#include <cstdint>

#include "level.hpp"

CROSSENT_LEVEL_BEGIN

// l_n = -w_y log_probs[n, y]; grad (if not nullptr) = grad_scale * d l_n / d log_probs[n].
// weight: [C] or nullptr; ignored rows give 0.
template <typename T>
void nll(const T* log_probs, int64_t n_rows, int64_t n_classes, const int64_t* labels,
         const double* weight, bool has_ignore, int64_t ignore_index, double* loss_out, T* grad,
         double grad_scale);

// l_n = -alpha_y (1 - p_y)^gamma log p_y; alpha: [C] or nullptr (no balancing).
template <typename T>
void softmax_focal(const T* logits, int64_t n_rows, int64_t n_classes, const int64_t* labels,
                   const double* alpha, double gamma, bool has_ignore, int64_t ignore_index,
                   double* loss_out, T* grad, double grad_scale);

CROSSENT_LEVEL_END
