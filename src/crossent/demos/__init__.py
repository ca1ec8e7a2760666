"""The lessons of ``crossent demo``: one scene per module, each a function returning a result.

Every result has ``table()`` (a :class:`SceneTable` of formatted cells), ``verdict`` (two lines
of plain words) and ``draw(out)`` (writes its figures into the directory ``out`` with
:mod:`crossent.plots` and returns their paths). The command line only prints them.

- :func:`neuron_scene`: a saturated sigmoid neuron, squared error against cross-entropy.
- :func:`focal_scene`: a dense-detection-like imbalanced problem, focal loss against
  cross-entropy on the rare class, with the :math:`\\gamma` sweep.
- :func:`doors_scene`: the doors and animals tables, likelihood as a product and
  cross-entropy as a sum of :math:`-\\log`.
- :func:`iris_scene`: softmax regression on Iris with cross-entropy, squared error and focal loss.
"""

from __future__ import annotations

from ._scene import SceneTable
from .doors import DoorsScene, doors_scene
from .focal import FocalScene, average_precision, focal_scene, make_anchors, precision_recall_curve
from .iris import IrisScene, iris_scene
from .neuron import NeuronScene, NeuronTrace, neuron_scene

__all__ = [
    "SCENES",
    "SceneTable",
    "NeuronScene",
    "NeuronTrace",
    "neuron_scene",
    "FocalScene",
    "focal_scene",
    "make_anchors",
    "average_precision",
    "precision_recall_curve",
    "DoorsScene",
    "doors_scene",
    "IrisScene",
    "iris_scene",
]

#: The tour's order: scene name -> the function that plays it.
SCENES = {"neuron": neuron_scene, "focal": focal_scene, "doors": doors_scene, "iris": iris_scene}
