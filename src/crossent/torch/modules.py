"""``nn.Module`` wrappers of the crossent losses (the ``torch.nn`` loss-module conventions).

Options are fixed at construction; class weights are registered as buffers, so they follow
the module across ``.to(device)`` and into its ``state_dict``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import functional as F
from .distill import distillation_loss, kl_div, linear_distillation_loss
from .linear import linear_cross_entropy

__all__ = [
    "CrossEntropyLoss",
    "BCEWithLogitsLoss",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "LinearCrossEntropyLoss",
    "KLDivLoss",
    "DistillationLoss",
    "LinearDistillationLoss",
]


class CrossEntropyLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.cross_entropy` (a drop-in for
    :class:`torch.nn.CrossEntropyLoss`, plus ``z_loss`` and ``softcap``).

    Parameters
    ----------
    weight : Tensor, optional
        Class weights ``(C,)``, kept as a buffer.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float, default 0.0
    z_loss : float, default 0.0
    softcap : float, optional
        See :func:`crossent.torch.cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import CrossEntropyLoss
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1)
    >>> x, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    >>> bool(torch.allclose(loss_fn(x, y), torch.nn.CrossEntropyLoss(label_smoothing=0.1)(x, y)))
    True
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                 z_loss=0.0, softcap=None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap = z_loss, softcap

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, softcap={self.softcap}")


class BCEWithLogitsLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.binary_cross_entropy_with_logits` (a drop-in for
    :class:`torch.nn.BCEWithLogitsLoss`).

    Parameters
    ----------
    weight : Tensor, optional
        Element weights broadcastable to the input, kept as a buffer.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : Tensor, optional
        Weight of positives per class (last dim), kept as a buffer.
    label_smoothing : float, default 0.0
        See :func:`crossent.torch.binary_cross_entropy_with_logits`.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import BCEWithLogitsLoss
    >>> x, t = torch.randn(4, 3), torch.rand(4, 3)
    >>> bool(torch.allclose(BCEWithLogitsLoss()(x, t), torch.nn.BCEWithLogitsLoss()(x, t)))
    True
    """

    def __init__(self, weight=None, reduction="mean", pos_weight=None, *, label_smoothing=0.0):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight))
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight, label_smoothing=self.label_smoothing)


class SigmoidFocalLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.sigmoid_focal_loss`; note torchvision's default
    ``reduction="none"``.

    Parameters
    ----------
    alpha : float or None, default 0.25
        Weight of the positive class; None or negative turns balancing off.
    gamma : float, default 2.0
        Focusing parameter.
    reduction : {"none", "mean", "sum"}, default "none"

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import SigmoidFocalLoss
    >>> SigmoidFocalLoss(alpha=None, gamma=0.0, reduction="sum")(torch.zeros(2), torch.ones(2)).item()
    1.386294...
    """

    def __init__(self, alpha=0.25, gamma=2.0, reduction="none"):
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, inputs, targets):
        return F.sigmoid_focal_loss(inputs, targets, self.alpha, self.gamma, self.reduction)


class SoftmaxFocalLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.softmax_focal_loss` (per-class ``alpha`` is kept as
    a buffer).

    Parameters
    ----------
    alpha : float or Tensor, optional
        A scalar for every class or per-class weights ``(C,)``; None turns balancing off.
    gamma : float, default 2.0
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import SoftmaxFocalLoss, CrossEntropyLoss
    >>> x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    >>> bool(torch.allclose(SoftmaxFocalLoss(gamma=0.0)(x, y), CrossEntropyLoss()(x, y)))
    True
    """

    def __init__(self, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean"):
        super().__init__()
        if isinstance(alpha, torch.Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha
        self.gamma, self.ignore_index, self.reduction = gamma, ignore_index, reduction

    def forward(self, input, target):
        return F.softmax_focal_loss(input, target, self.alpha, self.gamma, self.ignore_index,
                                    self.reduction)


class LinearCrossEntropyLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.linear_cross_entropy`: called with
    ``(hidden, weight, target, bias=None)``, typically ``(h, lm_head.weight, y, lm_head.bias)``.

    Parameters
    ----------
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float, default 0.0
    z_loss : float, default 0.0
    softcap : float, optional
    chunk_size : int, optional
    logit_scale : float, default 1.0
        See :func:`crossent.torch.linear_cross_entropy`. ``forward`` also takes the per-call
        ``sample_weight`` and ``normalizer`` (e.g. ``num_items_in_batch``).

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import LinearCrossEntropyLoss
    >>> head = torch.nn.Linear(4, 11)
    >>> h, y = torch.randn(5, 4), torch.randint(0, 11, (5,))
    >>> loss = LinearCrossEntropyLoss(label_smoothing=0.1)(h, head.weight, y, head.bias)
    >>> bool(torch.allclose(loss, torch.nn.functional.cross_entropy(head(h), y, label_smoothing=0.1)))
    True
    """

    def __init__(self, ignore_index=-100, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                 softcap=None, chunk_size=None, logit_scale=1.0):
        super().__init__()
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.chunk_size = z_loss, softcap, chunk_size
        self.logit_scale = logit_scale

    def forward(self, hidden, weight, target, bias=None, *, sample_weight=None, normalizer=None):
        return linear_cross_entropy(hidden, weight, target, bias, self.ignore_index, self.reduction,
                                    self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap,
                                    chunk_size=self.chunk_size, logit_scale=self.logit_scale,
                                    sample_weight=sample_weight, normalizer=normalizer)


class KLDivLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.kl_div` (a drop-in for :class:`torch.nn.KLDivLoss`).

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import KLDivLoss
    >>> log_q, p = torch.log_softmax(torch.randn(3, 5), 1), torch.softmax(torch.randn(3, 5), 1)
    >>> loss = KLDivLoss(reduction="batchmean")(log_q, p)
    >>> bool(torch.allclose(loss, torch.nn.KLDivLoss(reduction="batchmean")(log_q, p)))
    True
    """

    def __init__(self, reduction="mean", log_target=False):
        super().__init__()
        self.reduction, self.log_target = reduction, log_target

    def forward(self, input, target):
        return kl_div(input, target, self.reduction, self.log_target)


class DistillationLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.distillation_loss`: called with
    ``(student_logits, teacher_logits, target=None)``.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import DistillationLoss, distillation_loss
    >>> s, t, y = torch.randn(4, 7), torch.randn(4, 7), torch.tensor([0, 3, -100, 6])
    >>> loss = DistillationLoss(beta=0.1, temperature=2.0, hard_weight=0.3)(s, t, y)
    >>> bool(loss == distillation_loss(s, t, y, beta=0.1, temperature=2.0, hard_weight=0.3))
    True
    """

    def __init__(self, *, beta=0.5, temperature=1.0, hard_weight=0.0, ignore_index=-100,
                 reduction="mean"):
        super().__init__()
        self.beta, self.temperature, self.hard_weight = beta, temperature, hard_weight
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, student_logits, teacher_logits, target=None):
        return distillation_loss(student_logits, teacher_logits, target, beta=self.beta,
                                 temperature=self.temperature, hard_weight=self.hard_weight,
                                 ignore_index=self.ignore_index, reduction=self.reduction)


class LinearDistillationLoss(nn.Module):
    r"""Module form of :func:`crossent.torch.linear_distillation_loss`: called with
    ``(student_hidden, student_weight, teacher_hidden, teacher_weight, target=None,
    student_bias=None, teacher_bias=None)``.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import LinearDistillationLoss, distillation_loss
    >>> student, teacher = torch.nn.Linear(4, 11), torch.nn.Linear(8, 11)
    >>> hs, ht = torch.randn(5, 4), torch.randn(5, 8)
    >>> loss = LinearDistillationLoss(beta=0.9)(hs, student.weight, ht, teacher.weight, None,
    ...                                         student.bias, teacher.bias)
    >>> bool(torch.allclose(loss, distillation_loss(student(hs), teacher(ht), beta=0.9)))
    True
    """

    def __init__(self, *, beta=0.5, temperature=1.0, hard_weight=0.0, ignore_index=-100,
                 reduction="mean", chunk_size=None):
        super().__init__()
        self.beta, self.temperature, self.hard_weight = beta, temperature, hard_weight
        self.ignore_index, self.reduction, self.chunk_size = ignore_index, reduction, chunk_size

    def forward(self, student_hidden, student_weight, teacher_hidden, teacher_weight, target=None,
                student_bias=None, teacher_bias=None):
        return linear_distillation_loss(
            student_hidden, student_weight, teacher_hidden, teacher_weight, target,
            student_bias=student_bias, teacher_bias=teacher_bias, beta=self.beta,
            temperature=self.temperature, hard_weight=self.hard_weight,
            ignore_index=self.ignore_index, reduction=self.reduction, chunk_size=self.chunk_size)
