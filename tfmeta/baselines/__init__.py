"""Continual/multi-task baselines of Leap's Multi-CV table (Table 1) as
Keras models: ``ProgressiveNet`` (Rusu et al., 2016) and ``HAT`` (Serra et
al., 2018), both in the non-sequential form of Leap appendix G (revisits
allowed), trained on whole data sets by ``fit_dataset``."""

from tfmeta.baselines.training import CurveRun, error_rate, fit_dataset
from tfmeta.baselines.progressive import ProgressiveNet
from tfmeta.baselines.hat import HAT

__all__ = ["CurveRun", "HAT", "ProgressiveNet", "error_rate", "fit_dataset"]
