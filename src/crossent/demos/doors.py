r"""Scene *doors*: the likelihood of what happened is a product; its :math:`-\log` is a sum.

Three doors; a model gives each the probability that a gift is behind it, 0.8, 0.7 and 0.1.
The doors open on (gift, gift, nothing). The probability the model gave to exactly that is
:math:`0.8 \times 0.7 \times 0.9 = 0.504`, its *likelihood*. Products of many numbers below 1
vanish, so take :math:`-\ln`: the product becomes a sum,
:math:`-\ln 0.504 = -\ln 0.8 - \ln 0.7 - \ln 0.9 = 0.685`, the binary cross-entropy of the
three doors. A better model gives what happened a higher likelihood and a lower
cross-entropy. With several possible animals behind each door (ducks, beavers, walruses), the
same sum of :math:`-\ln` of the probability of what was found is the multi-class
cross-entropy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..functional import one_hot
from ..losses import binary_cross_entropy
from ..measures import cross_entropy
from ._scene import SceneTable

__all__ = ["DoorsScene", "doors_scene", "GIFT_PROBS", "BAD_GIFT_PROBS", "OUTCOME", "ANIMALS",
           "ANIMAL_PROBS", "ANIMAL_OUTCOME"]

#: P(gift) behind doors 1-3 under the good model, under a bad one, and what the doors showed.
GIFT_PROBS = (0.8, 0.7, 0.1)
BAD_GIFT_PROBS = (0.2, 0.3, 0.9)
OUTCOME = (1, 1, 0)
#: P(duck), P(beaver), P(walrus) behind each door (rows), and what was found.
ANIMALS = ("duck", "beaver", "walrus")
ANIMAL_PROBS = ((0.7, 0.2, 0.1), (0.3, 0.4, 0.3), (0.1, 0.5, 0.4))
ANIMAL_OUTCOME = ("duck", "walrus", "walrus")


@dataclass(frozen=True)
class DoorsScene:
    """The doors' numbers, each computed with crossent.

    ``models`` maps a model name to ``(gift_probs, probability of what happened per door,
    likelihood, cross-entropy)``; ``arrangements`` lists every outcome of the three doors with the
    good model's likelihood and cross-entropy; ``animals`` holds ``(table, found, probability of
    what was found per door, likelihood, cross-entropy)``.
    """

    outcome: tuple
    models: dict
    arrangements: tuple
    animals: tuple

    def table(self) -> SceneTable:
        rows = []
        for name, (gifts, happened, likelihood, ce) in self.models.items():
            rows.append((name, ", ".join(f"{p:g}" for p in gifts),
                         " x ".join(f"{p:g}" for p in happened) + f" = {likelihood:.4g}",
                         " + ".join(f"{-math.log(p):.3f}" for p in happened) + f" = {ce:.3f}"))
        _, found, happened, likelihood, ce = self.animals
        rows.append(("animals", "found " + ", ".join(found),
                     " x ".join(f"{p:g}" for p in happened) + f" = {likelihood:.4g}",
                     " + ".join(f"{-math.log(p):.3f}" for p in happened) + f" = {ce:.3f}"))
        shown = ", ".join("gift" if o else "none" for o in self.outcome)
        return SceneTable(
            f"Doors opened on ({shown}); animals found: {', '.join(found)}",
            ("model", "P(gift) per door",
             "likelihood = product", "cross-entropy = sum of -ln (nats)"), tuple(rows))

    @property
    def verdict(self) -> tuple:
        """Two lines: the good and the bad model on what happened, and the product-sum link."""
        (good, g), (bad, b) = self.models.items()
        return (f"The {good} model gave what happened probability {g[2]:.3f} (cross-entropy "
                f"{g[3]:.3f} nats); the {bad} one {b[2]:.3f} ({b[3]:.3f} nats): lower "
                f"cross-entropy, better model.",
                f"-ln turns the product of probabilities into a sum: -ln {g[2]:.3f} = "
                + " + ".join(f"{-math.log(p):.3f}" for p in g[1]) + f" = {g[3]:.3f}.")

    def draw(self, out):
        """Write ``doors.png`` into ``out``; return its path in a list."""
        from pathlib import Path

        from .. import plots

        table, found, *_ = self.animals
        return [plots.doors(
            {name: (gifts, happened) for name, (gifts, happened, *_) in self.models.items()},
            self.outcome, np.asarray(table), ANIMALS, [ANIMALS.index(a) for a in found],
            Path(out) / "doors.png")]


def _binary_doors(gift_probs, outcome):
    probs = np.asarray(gift_probs, dtype=np.float64)
    opened = np.asarray(outcome, dtype=np.float64)
    # probability of what happened at each door: p where a gift was found, 1 - p where not
    happened = np.where(opened == 1, probs, 1.0 - probs)
    ce = float(binary_cross_entropy(probs, opened, reduction="sum"))
    return tuple(float(p) for p in gift_probs), tuple(happened.tolist()), float(np.prod(happened)), ce


def doors_scene(*, gift_probs=GIFT_PROBS, bad_gift_probs=BAD_GIFT_PROBS, outcome=OUTCOME,
                animal_probs=ANIMAL_PROBS, animal_outcome=ANIMAL_OUTCOME):
    r"""Compute the doors tables: likelihood as a product, cross-entropy as a sum of :math:`-\ln`.

    The binary cross-entropy comes from :func:`crossent.binary_cross_entropy` (``reduction="sum"``)
    and the animals' from :func:`crossent.cross_entropy` of the one-hot finds against each door's
    row; the likelihoods are plain products, so ``exp(-cross_entropy) == likelihood`` checks one
    against the other.

    Parameters
    ----------
    gift_probs, bad_gift_probs : sequence of float
        P(gift) behind each door under the good and the bad model.
    outcome : sequence of {0, 1}
        1 where a gift was found.
    animal_probs : sequence of sequences
        One row per door: P(duck), P(beaver), P(walrus), summing to 1.
    animal_outcome : sequence of str
        The animal found behind each door.

    Returns
    -------
    DoorsScene

    Examples
    --------
    >>> from crossent.demos import doors_scene
    >>> scene = doors_scene()
    >>> _, happened, likelihood, ce = scene.models["good"]
    >>> happened, round(likelihood, 3), round(ce, 3)
    ((0.8, 0.7, 0.9), 0.504, 0.685)
    >>> round(scene.animals[3], 3), round(scene.animals[4], 2)   # 0.7 x 0.3 x 0.4
    (0.084, 2.48)
    """
    if len(gift_probs) != len(outcome) or len(bad_gift_probs) != len(outcome):
        raise ValueError(f"gift_probs, bad_gift_probs and outcome must have one entry per door, "
                         f"got {len(gift_probs)}, {len(bad_gift_probs)} and {len(outcome)}")
    if not set(outcome) <= {0, 1}:
        raise ValueError(f"outcome must hold 0 (nothing) or 1 (gift) per door, got {tuple(outcome)}")
    models = {"good": _binary_doors(gift_probs, outcome),
              "bad": _binary_doors(bad_gift_probs, outcome)}
    arrangements = tuple((opened, *_binary_doors(gift_probs, opened)[2:])
                         for opened in itertools.product((1, 0), repeat=len(outcome)))
    unknown = [a for a in animal_outcome if a not in ANIMALS]
    if unknown:
        raise ValueError(f"animal_outcome: {unknown[0]!r} is not one of {ANIMALS}")
    table = np.asarray(animal_probs, dtype=np.float64)
    if table.shape != (len(animal_outcome), len(ANIMALS)):
        raise ValueError(f"animal_probs must have one row of {len(ANIMALS)} probabilities per "
                         f"door ({len(animal_outcome)} doors), got shape {table.shape}")
    found = np.array([ANIMALS.index(a) for a in animal_outcome])
    # each door's cross-entropy H(one-hot find, row) = -ln P(found animal); the doors add up
    per_door = cross_entropy(one_hot(found, len(ANIMALS)), table)
    happened = table[np.arange(found.size), found]
    animals = (tuple(map(tuple, table.tolist())), tuple(animal_outcome), tuple(happened.tolist()),
               float(np.prod(happened)), float(np.sum(per_door)))
    return DoorsScene(tuple(outcome), models, arrangements, animals)
