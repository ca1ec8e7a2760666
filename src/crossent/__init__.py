"""crossent: the cross-entropy family done exactly and fast.

The NumPy API: information measures of distributions (:mod:`crossent.measures`), stable
building blocks (:mod:`crossent.functional`) and the losses with their analytic gradients
(:mod:`crossent.losses`). The PyTorch front lives in ``crossent.torch`` (needs torch).
"""

from ._backend import KernelsUnavailableWarning, get_num_threads, kernel_backend, set_num_threads
from .divergences import softmax_js_divergence, softmax_kl_divergence
from .functional import log_sigmoid, log_softmax, logsumexp, one_hot, sigmoid, smooth_labels, softmax
from .losses import (
    binary_cross_entropy,
    grad,
    nll_loss,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
    value_and_grad,
)
from .measures import cross_entropy, entropy, js_divergence, kl_divergence

__version__ = "0.1.0"

__all__ = [
    # measures of distributions
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "js_divergence",
    # losses
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "binary_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "nll_loss",
    # divergences between two models' logits (distillation)
    "softmax_kl_divergence",
    "softmax_js_divergence",
    # gradients
    "value_and_grad",
    "grad",
    # utilities
    "logsumexp",
    "softmax",
    "log_softmax",
    "sigmoid",
    "log_sigmoid",
    "one_hot",
    "smooth_labels",
    # kernels
    "kernel_backend",
    "KernelsUnavailableWarning",
    "set_num_threads",
    "get_num_threads",
]
