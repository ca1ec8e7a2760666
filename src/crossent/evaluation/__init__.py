"""Evaluating and comparing models by cross-entropy: metrics, file reading, bootstrap."""

from .bootstrap import PairedBootstrap, paired_bootstrap, verdict

__all__ = ["PairedBootstrap", "paired_bootstrap", "verdict"]
