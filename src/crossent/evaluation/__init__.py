"""Evaluating and comparing models by cross-entropy: metrics, file reading, bootstrap.

- :func:`score_arrays`, :class:`ScoreAccumulator`, :class:`Scores`: metrics of predictions
  (optionally weighted); :func:`score_multilabel_arrays`, :class:`MultilabelAccumulator`: per-class
  binary cross-entropy of multi-label predictions. Their sums merge across parts of the data.
- :func:`score_file`, :func:`compare_files`: the same on prediction files (CSV, Parquet, NPZ, or
  globs and directories of Parquet files), streamed in batches; :class:`PredictionFile` reads
  them, :func:`read_table` reads a whole table (``crossent train`` uses it).
- :func:`score_dask`, :func:`compare_dask`: the same on a Dask DataFrame (optional extra).
- :func:`paired_bootstrap`, :func:`bucketed_paired_bootstrap`, :func:`verdict`: comparing two models.
- :func:`calibration_curve`: reliability curve and expected calibration error.
"""

from .bootstrap import PairedBootstrap, bucket_of, bucketed_paired_bootstrap, paired_bootstrap, verdict
from .calibration import CalibrationAccumulator, CalibrationCurve, calibration_curve
from .distributed import compare_dask, score_dask
from .io import PredictionFile, PredictionFileError, read_table, read_truth
from .metrics import ScoreAccumulator, Scores, score_arrays
from .multilabel import MultilabelAccumulator, MultilabelScores, score_multilabel_arrays
from .scoring import Comparison, PairComparison, compare_files, score_file

__all__ = [
    "PairedBootstrap",
    "paired_bootstrap",
    "bucketed_paired_bootstrap",
    "bucket_of",
    "verdict",
    "CalibrationCurve",
    "CalibrationAccumulator",
    "calibration_curve",
    "PredictionFile",
    "PredictionFileError",
    "read_truth",
    "read_table",
    "Scores",
    "ScoreAccumulator",
    "score_arrays",
    "MultilabelScores",
    "MultilabelAccumulator",
    "score_multilabel_arrays",
    "score_file",
    "compare_files",
    "score_dask",
    "compare_dask",
    "Comparison",
    "PairComparison",
]
