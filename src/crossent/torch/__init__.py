"""crossent's PyTorch front: drop-in losses, fused linear cross-entropy, vocabulary-parallel loss.

Functions (``torch.nn.functional`` signatures, class dim 1): :func:`cross_entropy`,
:func:`binary_cross_entropy_with_logits`, :func:`sigmoid_focal_loss` (torchvision's),
:func:`softmax_focal_loss`; :func:`linear_cross_entropy` (the loss of ``hidden @ weight.T + bias``
without the N x V logits) and :func:`linear_cross_entropy_with_stats`; :func:`vocab_parallel_cross_entropy` and
:func:`vocab_parallel_linear_cross_entropy` (classes split across a ``torch.distributed`` group);
distillation: :func:`kl_div`, :func:`distillation_loss`, :func:`linear_distillation_loss`,
:func:`vocab_parallel_distillation_loss`.
``nn.Module`` wrappers: :class:`CrossEntropyLoss`, :class:`BCEWithLogitsLoss`,
:class:`SigmoidFocalLoss`, :class:`SoftmaxFocalLoss`, :class:`LinearCrossEntropyLoss`,
:class:`KLDivLoss`, :class:`DistillationLoss`, :class:`LinearDistillationLoss`.

Each is built from operators registered with ``torch.library`` (``torch.ops.crossent.*``) with
fake kernels and autograd: ``torch.compile(fullgraph=True)`` and ``torch.export`` trace them.

``import crossent`` never imports torch; this package does, and needs it installed.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "crossent.torch needs PyTorch, which is not installed: pip install torch "
        "(the NumPy API, `import crossent`, works without it)") from exc

from .distill import distillation_loss, kl_div, linear_distillation_loss
from .distributed import (
    vocab_parallel_cross_entropy,
    vocab_parallel_distillation_loss,
    vocab_parallel_linear_cross_entropy,
)
from .functional import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    sigmoid_focal_loss,
    softmax_focal_loss,
)
from .linear import LinearStats, linear_cross_entropy, linear_cross_entropy_with_stats
from .modules import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    DistillationLoss,
    KLDivLoss,
    LinearCrossEntropyLoss,
    LinearDistillationLoss,
    SigmoidFocalLoss,
    SoftmaxFocalLoss,
)

__all__ = [
    "cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "linear_cross_entropy",
    "linear_cross_entropy_with_stats",
    "LinearStats",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_distillation_loss",
    "vocab_parallel_linear_cross_entropy",
    "kl_div",
    "distillation_loss",
    "linear_distillation_loss",
    "CrossEntropyLoss",
    "BCEWithLogitsLoss",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "LinearCrossEntropyLoss",
    "KLDivLoss",
    "DistillationLoss",
    "LinearDistillationLoss",
]
