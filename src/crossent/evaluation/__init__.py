"""Evaluating and comparing models by cross-entropy: metrics, file reading, bootstrap."""

from .bootstrap import PairedBootstrap, paired_bootstrap, verdict
from .calibration import CalibrationCurve, calibration_curve

__all__ = ["PairedBootstrap", "paired_bootstrap", "verdict", "CalibrationCurve", "calibration_curve"]
