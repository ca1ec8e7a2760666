"""Hugging Face transformers causal LMs trained with crossent's fused linear cross-entropy.

``fuse_loss(model)`` replaces the forward of one model instance (as Liger-Kernel's
``apply_liger_kernel_to_*`` does): a forward with ``labels`` runs the decoder, then computes
the stock ``ForCausalLMLoss`` from the final hidden states and the LM head with
:func:`crossent.torch.linear_cross_entropy`, never holding the N x V logits; any other forward
(no labels, ``generate``) is the model's own.

Why a forward replacement: transformers 5.x calls its ``loss_function`` with the logits already
formed (``self.loss_function(logits=logits, labels=labels, ...)``), so a custom loss function
cannot avoid them, and its kernel hub mapping swaps layers fetched from the Hub, not the LM-head
loss. The causal-LM forwards of the supported architectures differ only in what they do to the
logits after ``lm_head``, which :func:`_head_of` records per class.
"""

from __future__ import annotations

import functools
import inspect
import types
from dataclasses import dataclass

import torch

try:
    from transformers.loss.loss_utils import ForCausalLMLoss
    from transformers.modeling_outputs import CausalLMOutputWithPast
    from transformers.modeling_utils import slice_logits_to_keep
    from transformers.utils.generic import can_return_tuple
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise ImportError("crossent.torch.transformers needs Hugging Face transformers: "
                      "pip install 'crossent[hf]'", name="transformers") from exc

from .linear import linear_cross_entropy

__all__ = ["fuse_loss"]


@dataclass(frozen=True)
class _Head:
    """What a model does to ``lm_head``'s output before its loss.

    ``multiplier``: logits multiplied by it (Cohere's ``logit_scale``); ``divisor``: logits
    divided by it (Granite's ``logits_scaling``); ``softcap``: then ``softcap * tanh(z / softcap)``
    (Gemma 2's ``final_logit_softcapping``). None: not done.
    """

    multiplier: float | None = None
    divisor: float | None = None
    softcap: float | None = None


def _plain(model):
    return _Head()


# Causal-LM classes whose forward is ``outputs = self.model(...)``; ``logits = lm_head(hidden)``
# then the post-processing that the function builds from the model (read in transformers 5.x).
_SUPPORTED = {
    "LlamaForCausalLM": _plain,
    "MistralForCausalLM": _plain,
    "Qwen2ForCausalLM": _plain,
    "Qwen3ForCausalLM": _plain,
    "Gemma2ForCausalLM": lambda model: _Head(softcap=model.config.final_logit_softcapping),
    "GraniteForCausalLM": lambda model: _Head(divisor=model.config.logits_scaling),
    "CohereForCausalLM": lambda model: _Head(multiplier=model.logit_scale),
}


def _head_of(model):
    """The model's logit post-processing; a clear error for an unsupported class."""
    name = type(model).__name__
    if name not in _SUPPORTED:
        raise TypeError(f"fuse_loss does not support {name} (module {type(model).__module__}); "
                        f"supported classes: {', '.join(sorted(_SUPPORTED))}")
    return _SUPPORTED[name](model)


def _scaled_hidden(hidden, head):
    """Hidden states whose logits ``h @ W.T`` are the model's scaled logits.

    ``(c h) @ W.T = c (h @ W.T)`` (and likewise for a division): the scale moves from the
    N x V logits onto the N x D hidden states, exact up to rounding, and its gradient flows
    through this product to the decoder.
    """
    if head.multiplier is not None:
        hidden = hidden * head.multiplier
    if head.divisor is not None:
        hidden = hidden / head.divisor
    return hidden


def _check_stock_loss(model):
    if model.loss_function is not ForCausalLMLoss:
        raise ValueError(f"fuse_loss replaces transformers' ForCausalLMLoss, but this "
                         f"{type(model).__name__} uses {model.loss_function!r} as its loss_function")


def _causal_lm_loss(hidden, lm_head, head, labels, *, num_items_in_batch=None, ignore_index=-100,
                    shift_labels=None):
    """transformers' ``ForCausalLMLoss`` of ``head(lm_head(hidden))``, without the logits.

    Tokens ``< n`` predict token ``n`` (labels shifted left, the last position ignored);
    ``num_items_in_batch`` given: the sum of the token losses divided by it (so micro-batches of
    one accumulated step add up to the big batch's mean), else the mean over counted tokens.
    """
    if shift_labels is None:
        labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)
        shift_labels = labels[..., 1:]
    # float32 like the stock loss's ``logits.float()``: the loss of a bfloat16 model is not rounded
    rows = _scaled_hidden(hidden.reshape(-1, hidden.shape[-1]).float(), head)
    targets = shift_labels.reshape(-1).to(rows.device)
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = linear_cross_entropy(rows, lm_head.weight, targets, lm_head.bias,
                                ignore_index=ignore_index, reduction=reduction,
                                softcap=head.softcap)
    if num_items_in_batch is None:
        return loss
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


def fuse_loss(model):
    """Make a transformers causal LM compute its training loss with the fused linear cross-entropy.

    With ``labels``, the forward computes transformers' ``ForCausalLMLoss`` of the model's
    logits :math:`z = \\operatorname{post}(h W^\\top + b)` (``post``: the model's logit scale,
    then its final-logit softcap) from the decoder's last hidden states ``h`` ``(B, T, D)`` and
    the LM head ``W`` ``(V, D)`` with :func:`crossent.torch.linear_cross_entropy`:

    .. math:: \\ell = \\frac{1}{M} \\sum_{n, t:\\ y_{n,t+1} \\ne -100}
              \\Big(\\log \\sum_v e^{z_{n,t,v}} - z_{n,t,y_{n,t+1}}\\Big),

    with :math:`M` the count of those tokens, or ``num_items_in_batch`` when given (the sum
    over several accumulated micro-batches then equals one big batch's mean). ``ignore_index``
    and ``shift_labels`` keyword arguments are honoured as transformers does; tied input and
    output embeddings share one parameter and get both gradients.

    The N x V logits are never formed, so the returned output's ``logits`` is None whenever
    ``labels`` are given (as with Liger-Kernel); forwards without ``labels`` and ``generate``
    run the model's own forward, unchanged. Two deliberate differences from the stock loss: a
    float16/bfloat16 model's logits are computed in float32 (the stock model rounds them to its
    dtype before its float32 loss), and a batch without any counted token has loss 0 and zero
    gradients (the stock mean is NaN).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        One of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
        Gemma2ForCausalLM (``final_logit_softcapping``), GraniteForCausalLM (logits divided by
        ``logits_scaling``), CohereForCausalLM (logits multiplied by ``logit_scale``), using the
        stock ``ForCausalLMLoss``. Changed in place; calling it again changes nothing.

    Returns
    -------
    model
        The same object.

    Raises
    ------
    TypeError
        If the model's class is not supported (the message names it).
    ValueError
        If the model uses a loss function other than ``ForCausalLMLoss``.

    References
    ----------
    Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training", 2024 (fused linear
    cross-entropy in transformers models by forward replacement).

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from crossent.torch.transformers import fuse_loss
    >>> config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64,
    ...                      num_hidden_layers=1, num_attention_heads=4)
    >>> _ = torch.manual_seed(0)
    >>> model = LlamaForCausalLM(config)
    >>> ids = torch.randint(0, 512, (2, 16))
    >>> stock = model(ids, labels=ids).loss
    >>> fused = fuse_loss(model)(ids, labels=ids)
    >>> fused.logits is None, torch.allclose(fused.loss, stock, atol=1e-5)
    (True, True)
    """
    _head_of(model)  # raises for an unsupported class
    _check_stock_loss(model)
    if getattr(model, "_crossent_fused", False):
        return model
    # a bound method, so that copy.deepcopy(model) binds the copy's forward to the copy
    model.forward = types.MethodType(_fused_forward(type(model)), model)
    model._crossent_fused = True
    return model


@can_return_tuple
def _fused(self, labels, logits_to_keep=0, **options):
    """The stock forward with the loss fused: the other arguments go to the decoder, the loss's to both."""
    _check_stock_loss(self)
    outputs = self.model(**options)
    hidden = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
    loss_options = {k: options[k] for k in ("num_items_in_batch", "ignore_index", "shift_labels")
                    if k in options}
    loss = _causal_lm_loss(hidden, self.lm_head, _head_of(self), labels, **loss_options)
    return CausalLMOutputWithPast(loss=loss, logits=None, cache=outputs.cache,
                                  hidden_states=outputs.hidden_states, attentions=outputs.attentions)


@functools.cache
def _fused_forward(model_class):
    """``model_class.forward`` with its signature, running :func:`_fused` when labels are given."""
    stock = model_class.forward
    signature = inspect.signature(stock)
    (extra,) = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]

    @functools.wraps(stock)
    def forward(self, *args, **kwargs):
        arguments = dict(signature.bind(self, *args, **kwargs).arguments)
        if arguments.get("labels") is None:
            return stock(self, *args, **kwargs)
        options = arguments.pop(extra, {})
        return _fused(**arguments, **options)

    return forward
