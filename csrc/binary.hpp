// Element-wise binary losses over flat arrays of n elements. Specification:
// crossent/_reference.py. targets are read in their own dtype TT (float or double); the
// options (options.hpp) hold the element weights. Each returns the float64 sum of the losses;
// loss_out (if not nullptr) receives every element's loss, grad (if not nullptr)
// grad_scale * dl/dx, and *n_bad the number of targets (and probabilities) outside [0, 1],
// NaN included, counted in the same pass.
#pragma once
#include <cstdint>

#include "level.hpp"
#include "options.hpp"

CROSSENT_LEVEL_BEGIN

template <typename T, typename TT>
double sigmoid_bce(const T* logits, int64_t n, const TT* targets, const BinaryOptions& opt,
                   double* loss_out, T* grad, double grad_scale, int64_t* n_bad);

template <typename T, typename TT>
double bce(const T* probs, int64_t n, const TT* targets, const BinaryOptions& opt,
           double* loss_out, T* grad, double grad_scale, int64_t* n_bad);

template <typename T, typename TT>
double sigmoid_focal(const T* logits, int64_t n, const TT* targets, const BinaryOptions& opt,
                     double* loss_out, T* grad, double grad_scale, int64_t* n_bad);

CROSSENT_LEVEL_END
