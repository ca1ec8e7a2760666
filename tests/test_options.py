"""crossent._options: one options object per loss family, validated once, read by every backend.

The same bad option gives the same error from the family's constructor, the NumPy loss, the
torch loss and the fused linear loss (they all validate through the constructor); the object
a loss builds is the one its kernel or reference receives; every field is read by the
reference, and the compiled kernels and the torch engine agree with it on one object with every
option set; the objects are immutable and compare and hash by value.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import crossent
from crossent import _dispatch, _reference
from crossent._options import BinaryOptions, NLLOptions, SoftmaxCEOptions, SoftmaxFocalOptions

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5)) * 3
Y = np.array([0, 1, 2, 3, 4, 0])
T_DENSE = RNG.dirichlet(np.ones(5), size=6)
XB = RNG.normal(size=(4, 3)) * 3
TB = RNG.uniform(size=(4, 3))
PB = RNG.uniform(0.05, 0.95, size=(4, 3))


def _raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


# ----------------------------------------------------------------------------- one message everywhere
SOFTMAX_BAD = [
    ("label_smoothing", 1.5, ValueError, "label_smoothing must be <= 1.0, got 1.5"),
    ("label_smoothing", float("nan"), ValueError, "label_smoothing must be finite, got nan"),
    ("z_loss", -1e-4, ValueError, "z_loss must be >= 0.0, got -0.0001"),
    ("softcap", 0.0, ValueError, "softcap must be > 0.0, got 0.0"),
    ("softcap", "30", TypeError, "softcap must be a real number, got '30'"),
    ("reduction", "avg", ValueError, "reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
    ("ignore_index", 1.0, TypeError, "ignore_index must be an integer or None, got 1.0"),
]


@pytest.mark.parametrize("name,value,exc,message", SOFTMAX_BAD)
def test_softmax_options_give_one_message_from_every_front(name, value, exc, message):
    with _raises(exc, message):
        SoftmaxCEOptions.checked(**{name: value})
    with _raises(exc, message):
        crossent.softmax_cross_entropy(X, Y, **{name: value})
    torch = pytest.importorskip("torch")
    import crossent.torch as ct

    with _raises(exc, message):
        ct.cross_entropy(torch.tensor(X), torch.tensor(Y), **{name: value})
    h, w = torch.tensor(X), torch.tensor(RNG.normal(size=(7, 5)))
    with _raises(exc, message):
        ct.linear_cross_entropy(h, w, torch.tensor(Y), **{name: value})


def test_class_weights_give_one_message_from_every_front():
    bad = np.array([1.0, 2.0, -0.5, 1.0, 1.0])
    message = "weight[2] = -0.5 is negative"
    with _raises(ValueError, message):
        SoftmaxCEOptions.checked(weight=bad, num_classes=5)
    with _raises(ValueError, message):
        NLLOptions.checked(weight=bad, num_classes=5)
    with _raises(ValueError, message):
        crossent.softmax_cross_entropy(X, Y, weight=bad)
    with _raises(ValueError, message):
        crossent.nll_loss(X, Y, weight=bad)
    torch = pytest.importorskip("torch")
    import crossent.torch as ct

    with _raises(ValueError, message):
        ct.cross_entropy(torch.tensor(X), torch.tensor(Y), weight=torch.tensor(bad))


FOCAL_BAD = [
    ("gamma", -1.0, ValueError, "gamma must be >= 0.0, got -1.0"),
    ("alpha", 1.5, ValueError, "alpha must be <= 1.0, got 1.5"),
    ("reduction", "batchmean", ValueError, "reduction must be one of 'mean', 'sum', 'none'; got 'batchmean'"),
]


@pytest.mark.parametrize("name,value,exc,message", FOCAL_BAD)
def test_focal_options_give_one_message_from_every_front(name, value, exc, message):
    with _raises(exc, message):
        SoftmaxFocalOptions.checked(num_classes=5, **{name: value})
    with _raises(exc, message):
        BinaryOptions.checked(**{name: value})
    with _raises(exc, message):
        crossent.softmax_focal_loss(X, Y, **{name: value})
    with _raises(exc, message):
        crossent.sigmoid_focal_loss(XB, TB, **{name: value})
    torch = pytest.importorskip("torch")
    import crossent.torch as ct

    with _raises(exc, message):
        ct.softmax_focal_loss(torch.tensor(X), torch.tensor(Y), **{name: value})
    with _raises(exc, message):
        ct.sigmoid_focal_loss(torch.tensor(XB), torch.tensor(TB), **{name: value})


@pytest.mark.parametrize("name,value,message", [
    ("label_smoothing", -0.1, "label_smoothing must be >= 0.0, got -0.1"),
    ("pos_weight", np.array([1.0, -2.0, 1.0]), "pos_weight[1] = -2.0 is negative"),
    ("weight", np.array([[np.inf], [1.0], [1.0], [1.0]]), "weight[0, 0] = inf is not finite"),
])
def test_binary_options_give_one_message_from_every_front(name, value, message):
    with _raises(ValueError, message):
        BinaryOptions.checked(shape=XB.shape, **{name: value})
    with _raises(ValueError, message):
        crossent.sigmoid_binary_cross_entropy(XB, TB, **{name: value})
    torch = pytest.importorskip("torch")
    import crossent.torch as ct

    if isinstance(value, np.ndarray):
        value = torch.tensor(value)
    with _raises(ValueError, message):
        ct.binary_cross_entropy_with_logits(torch.tensor(XB), torch.tensor(TB), **{name: value})


# ----------------------------------------------------------------------------- validated once
def test_a_numpy_loss_validates_once_and_hands_that_object_to_the_kernel(monkeypatch, backend):
    built, received = [], []
    checked = SoftmaxCEOptions.checked.__func__

    def spy_checked(cls, **kwargs):
        built.append(checked(cls, **kwargs))
        return built[-1]

    original = _dispatch.softmax_ce_index

    def spy_dispatch(x, labels, options, *args, **kwargs):
        received.append(options)
        return original(x, labels, options, *args, **kwargs)

    monkeypatch.setattr(SoftmaxCEOptions, "checked", classmethod(spy_checked))
    monkeypatch.setattr(_dispatch, "softmax_ce_index", spy_dispatch)
    crossent.value_and_grad(crossent.softmax_cross_entropy)(X, Y, label_smoothing=0.1, softcap=4.0)
    assert len(built) == 1 and len(received) == 1 and received[0] is built[0]
    assert received[0] == SoftmaxCEOptions(label_smoothing=0.1, softcap=4.0)


def test_the_torch_operator_hands_the_kernel_the_same_object_as_the_numpy_loss(monkeypatch):
    torch = pytest.importorskip("torch")
    import crossent.torch as ct

    received = []
    original = _dispatch.softmax_ce_index

    def spy(x, labels, options, *args, **kwargs):
        received.append(options)
        return original(x, labels, options, *args, **kwargs)

    monkeypatch.setattr(_dispatch, "softmax_ce_index", spy)
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    crossent.softmax_cross_entropy(X, Y, weight=w, ignore_index=-100, z_loss=1e-3)
    ct.cross_entropy(torch.tensor(X), torch.tensor(Y), weight=torch.tensor(w), z_loss=1e-3)
    assert len(received) == 2 and received[0] == received[1]
    assert received[0].weight is not w and np.array_equal(received[0].weight, w)


# ----------------------------------------------------------------------------- every backend reads it
# (loss, options with every field the loss reads set, the fields it reads, inputs)
CASES = [
    ("softmax_ce_index",
     SoftmaxCEOptions(weight=np.array([1.0, 2.0, 0.5, 1.5, 3.0]), ignore_index=0, label_smoothing=0.2,
                      z_loss=1e-2, softcap=2.0),
     ("weight", "ignore_index", "label_smoothing", "z_loss", "softcap"), (X, Y)),
    ("softmax_ce_dense",
     SoftmaxCEOptions(weight=np.array([1.0, 2.0, 0.5, 1.5, 3.0]), label_smoothing=0.2, z_loss=1e-2,
                      softcap=2.0),
     ("weight", "label_smoothing", "z_loss", "softcap"), (X, T_DENSE)),
    ("nll", NLLOptions(weight=np.array([1.0, 2.0, 0.5, 1.5, 3.0]), ignore_index=0),
     ("weight", "ignore_index"), (X - 10, Y)),
    ("softmax_focal",
     SoftmaxFocalOptions(alpha=np.array([0.5, 0.25, 1.0, 2.0, 0.75]), gamma=0.5, ignore_index=0),
     ("alpha", "gamma", "ignore_index"), (X, Y)),
    ("sigmoid_binary_cross_entropy",
     BinaryOptions(weight=np.array([[1.0], [2.0], [0.5], [3.0]]), pos_weight=np.array([2.0, 0.5, 1.5]),
                   label_smoothing=0.2),
     ("weight", "pos_weight", "label_smoothing"), (XB, TB)),
    ("binary_cross_entropy", BinaryOptions(weight=np.array([[1.0], [2.0], [0.5], [3.0]])), ("weight",),
     (PB, TB)),
    ("sigmoid_focal", BinaryOptions(alpha=0.75, gamma=0.5), ("alpha", "gamma"), (XB, TB)),
]
_REFERENCE = {"softmax_ce_index": "softmax_cross_entropy_index",
              "softmax_ce_dense": "softmax_cross_entropy_dense"}  # the reference's names


ENGINE_CASES = [c for c in CASES if c[0] not in ("nll", "binary_cross_entropy")]  # no torch front


def _labels(data):
    """Index targets as the kernels take them (int64), others as given."""
    return data.astype(np.int64) if data.dtype.kind == "i" else data


@pytest.mark.parametrize("name,opts,fields,inputs", CASES, ids=[c[0] for c in CASES])
def test_every_field_is_read_by_the_reference(name, opts, fields, inputs):
    ref = getattr(_reference, _REFERENCE.get(name, name))
    x, t = inputs
    loss, grad = ref(x, _labels(t), opts)
    for field in fields:
        default = dataclasses.replace(opts, **{field: getattr(type(opts)(), field)})
        other_loss, other_grad = ref(x, _labels(t), default)
        assert not (np.allclose(other_loss, loss) and np.allclose(other_grad, grad)), field


@pytest.mark.parametrize("name,opts,fields,inputs", CASES, ids=[c[0] for c in CASES])
def test_the_kernels_read_the_object_the_reference_reads(name, opts, fields, inputs, backend):
    ref = getattr(_reference, _REFERENCE.get(name, name))
    x, t = inputs
    want_loss, want_grad = ref(x, _labels(t), opts)
    loss, grad = getattr(_dispatch, name)(x, _labels(t), opts, 0.5, True)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, 0.5 * want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,opts,fields,inputs", ENGINE_CASES, ids=[c[0] for c in ENGINE_CASES])
def test_the_torch_engine_reads_the_object_the_reference_reads(name, opts, fields, inputs):
    torch = pytest.importorskip("torch")
    from crossent.torch import _engine
    from crossent.torch._autograd import tensor_options

    ref = getattr(_reference, _REFERENCE.get(name, name))
    x, t = inputs
    want_loss, want_grad = ref(x, _labels(t), opts)
    t_opts = tensor_options(opts, "cpu")
    assert all(isinstance(getattr(t_opts, f), torch.Tensor) for f in ("weight", "pos_weight", "alpha")
               if isinstance(getattr(opts, f, None), np.ndarray))
    xt, tt = torch.tensor(x), torch.tensor(t)
    if name == "softmax_ce_index":
        counted = tt != opts.ignore_index
        loss, grad, _ = _engine.softmax_ce_index_rows(xt, torch.where(counted, tt, 0), counted, counted,
                                                      t_opts, 0.5, True)
    elif name == "softmax_focal":
        counted = tt != opts.ignore_index
        loss, grad = _engine.softmax_focal(xt, torch.where(counted, tt, 0), counted, t_opts, 0.5, True)
    else:
        loss, grad = getattr(_engine, name)(xt, tt, t_opts, 0.5, True)
    np.testing.assert_allclose(loss.numpy(), want_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad.numpy(), 0.5 * want_grad, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- immutable, hashable
def test_options_are_frozen_and_own_their_weights():
    w = np.array([1.0, 2.0, 3.0])
    opts = SoftmaxCEOptions.checked(weight=w, num_classes=3, label_smoothing=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.label_smoothing = 0.2
    with pytest.raises(ValueError, match="read-only"):
        opts.weight[0] = 5.0
    w[0] = 5.0  # the caller's array changes; the validated copy does not
    assert opts.weight.tolist() == [1.0, 2.0, 3.0]
    b = BinaryOptions.checked(pos_weight=[1.0, 2.0], shape=(3, 2))
    with pytest.raises(ValueError, match="read-only"):
        b.pos_weight[1] = 0.0


def test_options_compare_and_hash_by_value():
    a = SoftmaxCEOptions.checked(label_smoothing=0.1, softcap=30, ignore_index=-100)
    b = SoftmaxCEOptions.checked(label_smoothing=0.1, softcap=30.0, ignore_index=-100)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != SoftmaxCEOptions.checked(label_smoothing=0.1, softcap=30, ignore_index=0)
    w1 = SoftmaxCEOptions.checked(weight=[1.0, 2.0], num_classes=2)
    w2 = SoftmaxCEOptions.checked(weight=np.array([1.0, 2.0]), num_classes=2)
    w3 = SoftmaxCEOptions.checked(weight=[1.0, 2.5], num_classes=2)
    assert w1 == w2 and hash(w1) == hash(w2) and w1 != w3
    assert {w1: "cached"}[w2] == "cached"
    # a family's options never equal another family's, even with the same field values
    assert NLLOptions() != SoftmaxCEOptions() and BinaryOptions() != SoftmaxFocalOptions(gamma=0.0)


def test_checked_normalises_values_and_defaults_are_the_plain_losses():
    opts = SoftmaxCEOptions.checked(label_smoothing=1, z_loss=np.float32(0.5), softcap=5)
    assert type(opts.label_smoothing) is float and type(opts.z_loss) is float and opts.softcap == 5.0
    assert SoftmaxCEOptions.checked() == SoftmaxCEOptions()
    assert SoftmaxFocalOptions.checked(alpha=0.25, num_classes=3).alpha.tolist() == [0.25] * 3
    # a focal loss with alpha None and gamma 0 is the cross-entropy: BinaryOptions' defaults
    x, t = XB.reshape(-1), TB.reshape(-1)
    np.testing.assert_allclose(_reference.sigmoid_focal(x, t, BinaryOptions())[0],
                               _reference.sigmoid_binary_cross_entropy(x, t, BinaryOptions())[0], rtol=1e-14)


def test_torch_compile_keeps_the_options_constant():
    torch = pytest.importorskip("torch")
    from crossent.torch._autograd import checked_options

    def f(x):
        opts = checked_options(SoftmaxCEOptions, reduction="sum", label_smoothing=0.1, softcap=2.0)
        return x * opts.label_smoothing + (opts.softcap if opts.reduction == "sum" else 0.0)

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    x = torch.ones(3)
    torch.testing.assert_close(compiled(x), x * 0.1 + 2.0)
