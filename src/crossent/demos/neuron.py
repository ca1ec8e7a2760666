r"""Scene *neuron*: one sigmoid neuron started confidently wrong learns slowly with squared error.

A neuron :math:`a = \sigma(z)`, :math:`z = wx + b`, sees one input :math:`x` whose target is
:math:`t`, and starts far on the wrong side (:math:`w = b = 2`, :math:`x = 1`, :math:`t = 0`:
:math:`a = \sigma(4) = 0.982`). Gradient descent on either loss moves :math:`z` by the
derivative of the loss with respect to :math:`z`:

- squared error :math:`\tfrac12 (a - t)^2`: :math:`\partial/\partial z = (a - t)\,\sigma'(z)`,
  and :math:`\sigma'(z) = a(1 - a)` is 0.018 at the start: the neuron barely moves;
- cross-entropy :math:`-[t\log a + (1-t)\log(1-a)]`: :math:`\partial/\partial z = a - t`,
  no :math:`\sigma'(z)` factor: the worse the mistake, the larger the step.

(The setting is M. Nielsen's, *Neural Networks and Deep Learning*, ch. 3, 2015.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..functional import log_sigmoid
from ..losses import sigmoid_binary_cross_entropy, value_and_grad
from ._scene import SceneTable, check_count

__all__ = ["NeuronTrace", "NeuronScene", "neuron_scene", "LOSSES"]

LOSSES = ("cross-entropy", "squared error")
_bce = value_and_grad(sigmoid_binary_cross_entropy)


@dataclass(frozen=True)
class NeuronTrace:
    """One neuron's path, one entry per step from 0 (the start) to ``steps``.

    ``outputs`` is :math:`a = \\sigma(z)`, ``losses`` the loss being minimised, ``slopes``
    :math:`\\sigma'(z)` and ``grads`` :math:`\\partial\\,\\mathrm{loss}/\\partial z`.
    """

    loss: str
    outputs: np.ndarray
    losses: np.ndarray
    slopes: np.ndarray
    grads: np.ndarray


@dataclass(frozen=True)
class NeuronScene:
    """Both neurons' traces (``traces[name]`` for each name in :data:`LOSSES`) and the setting."""

    traces: dict
    target: float
    learning_rate: float
    checkpoint: int

    def loss_ratio(self, loss, step=None):
        """Loss at ``step`` (default: the checkpoint) divided by the loss at the start."""
        trace = self.traces[loss]
        return float(trace.losses[self.checkpoint if step is None else step] / trace.losses[0])

    def table(self) -> SceneTable:
        k = self.checkpoint
        rows = []
        for name, tr in self.traces.items():
            rows.append((name, f"{tr.outputs[0]:.3f}", f"{tr.outputs[k]:.3f}",
                         f"{tr.outputs[-1]:.3f}", f"{tr.slopes[0]:.4f}", f"{tr.grads[0]:.4f}",
                         f"{self.loss_ratio(name):.3f}"))
        return SceneTable(
            f"One sigmoid neuron, target {self.target:g}, learning rate {self.learning_rate:g}",
            ("trained with", "output at start", f"after {k} steps",
             f"after {self.traces[LOSSES[0]].outputs.size - 1}", "sigma'(z) at start",
             "d loss/dz at start", f"loss ratio at {k}"),
            tuple(rows))

    @property
    def verdict(self) -> tuple:
        """Two lines saying what happened and why."""
        ce, se = (self.traces[name] for name in LOSSES)
        k = self.checkpoint
        return (f"After {k} steps cross-entropy brought the output from {ce.outputs[0]:.3f} to "
                f"{ce.outputs[k]:.3f} (loss x{self.loss_ratio(LOSSES[0]):.3f}); squared error is "
                f"still at {se.outputs[k]:.3f} (loss x{self.loss_ratio(LOSSES[1]):.3f}).",
                f"Squared error's gradient (a - t) sigma'(z) carries sigma'(z) = {se.slopes[0]:.4f}"
                f" at the start; cross-entropy's is a - t = {ce.grads[0]:.3f}.")

    def draw(self, out):
        """Write ``neuron.png`` into the directory ``out``; return its path in a list."""
        from pathlib import Path

        from .. import plots

        return [plots.neuron_traces(
            {name: (tr.outputs, tr.losses, tr.slopes) for name, tr in self.traces.items()},
            Path(out) / "neuron.png", checkpoint=self.checkpoint,
            title=f"One neuron started confidently wrong (target {self.target:g})")]


def _sigmoid_and_slope(z):
    # a = sigma(z) and sigma'(z) = sigma(z) sigma(-z), both from log-sigmoids (no 1 - a cancellation).
    ls, lm = log_sigmoid(z), log_sigmoid(-z)
    return np.exp(ls), np.exp(ls + lm)


def neuron_scene(*, weight=2.0, bias=2.0, x=1.0, target=0.0, learning_rate=0.15, steps=300,
                 checkpoint=30):
    r"""Train one sigmoid neuron by gradient descent with cross-entropy and with squared error.

    Both start from the same ``weight`` and ``bias``; step :math:`s` updates
    :math:`w \leftarrow w - \eta\,g\,x`, :math:`b \leftarrow b - \eta\,g` with
    :math:`g = \partial\,\mathrm{loss}/\partial z` (see the module's text for both :math:`g`).

    Parameters
    ----------
    weight, bias : float, default 2.0
        Starting parameters (with ``x = 1`` and ``target = 0``, :math:`z = 4`: confidently wrong).
    x : float, default 1.0
        The one input.
    target : float, default 0.0
        The target in [0, 1].
    learning_rate : float, default 0.15
        Step size :math:`\eta`, the same for both losses.
    steps : int, default 300
        Number of gradient steps.
    checkpoint : int, default 30
        The step the verdict and :meth:`NeuronScene.loss_ratio` look at (at most ``steps``).

    Returns
    -------
    NeuronScene

    Examples
    --------
    >>> from crossent.demos import neuron_scene
    >>> scene = neuron_scene(steps=30)
    >>> round(float(scene.traces["cross-entropy"].outputs[0]), 3)   # sigma(4)
    0.982
    >>> scene.loss_ratio("cross-entropy") < 0.1 < 0.9 < scene.loss_ratio("squared error")
    True
    """
    for name, value in (("weight", weight), ("bias", bias), ("x", x)):
        _checks.check_scalar(value, name)
    target = _checks.check_scalar(target, "target", low=0.0, high=1.0)
    learning_rate = _checks.check_scalar(learning_rate, "learning_rate", low=0.0)
    steps = check_count(steps, "steps", low=1)
    checkpoint = check_count(checkpoint, "checkpoint", low=0, high=steps)
    traces = {}
    for loss in LOSSES:
        w, b = float(weight), float(bias)
        rows = np.empty((steps + 1, 4))
        for step in range(steps + 1):
            z = np.array([w * x + b])
            a, slope = _sigmoid_and_slope(z)
            if loss == LOSSES[0]:
                # d/dz of -[t log a + (1-t) log(1-a)] = a - t: sigma'(z) cancels against 1/(a(1-a)).
                value, g = _bce(z, np.array([target]), reduction="sum")
                value, g = float(value), float(g[0])
            else:
                # d/dz of (a - t)^2 / 2 = (a - t) sigma'(z): the chain rule keeps the slope.
                value, g = 0.5 * float(a[0] - target) ** 2, float((a[0] - target) * slope[0])
            rows[step] = a[0], value, slope[0], g
            w -= learning_rate * g * x
            b -= learning_rate * g
        traces[loss] = NeuronTrace(loss, *(rows[:, i].copy() for i in range(4)))
    return NeuronScene(traces, target, learning_rate, checkpoint)
