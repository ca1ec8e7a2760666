// Fused softmax cross-entropy: forward and backward in one call, index and dense targets.
// The readable specification of every formula here is crossent/_reference.py.
#pragma once
#include <cstdint>

#include "level.hpp"
#include "options.hpp"

CROSSENT_LEVEL_BEGIN

// logits: [N, C] C-contiguous; labels: [N]; loss_out: [N] per-row losses (ignored rows 0).
// grad: [N, C] or nullptr; when given it receives grad_scale * d loss_n / d logits_n. grad may
// be logits itself (the gradient then overwrites the logits in place).
// The bindings have validated every label.
template <typename T>
void softmax_ce_index(const T* logits, int64_t n_rows, int64_t n_classes, const int64_t* labels,
                      const SoftmaxCEOptions& opt, double* loss_out, T* grad, double grad_scale);

// targets: [N, C] distributions, read in their own dtype TT. Options: weight, label_smoothing,
// z_loss, softcap. Returns the number of targets outside [0, 1] (NaN included), counted in the
// same pass; the outputs are meaningless when it is not 0 (the caller raises). grad may be
// logits itself, as above.
template <typename T, typename TT>
int64_t softmax_ce_dense(const T* logits, int64_t n_rows, int64_t n_classes, const TT* targets,
                         const SoftmaxCEOptions& opt, double* loss_out, T* grad,
                         double grad_scale);

// Row normalisation, one row of logits x at a time: lse = logsumexp(x) into lse_out (may be
// nullptr) and, into out (may be nullptr, may alias x), softmax(x) when log_space is false or
// log_softmax(x) = x - lse when it is true. Same conventions as crossent.functional: a row of
// -inf, or one holding +inf, has no distribution (NaN), NaN in gives NaN out.
template <typename T>
void normalize_rows(const T* x, int64_t n_rows, int64_t n_classes, double* lse_out, T* out,
                    bool log_space);

CROSSENT_LEVEL_END
