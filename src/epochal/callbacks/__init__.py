"""Callbacks: one module per callback, named after the class users know."""

from epochal.callbacks.base import Callback, MonitorCallback
from epochal.callbacks.csv_logger import CSVLogger
from epochal.callbacks.distillation import Distillation
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.ema import EMA
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.phase_freezing import PhaseFreezing
from epochal.callbacks.progress_bar import ProgressBar
from epochal.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from epochal.callbacks.run_logger import RunLogger
from epochal.callbacks.snapshot_ensemble import SnapshotEnsemble
from epochal.callbacks.swa import SWA
from epochal.callbacks.tensorboard import TensorBoard
from epochal.callbacks.terminate_on_nan import TerminateOnNaN
from epochal.callbacks.weight_averaging import WeightAveraging

__all__ = [
    "EMA",
    "SWA",
    "CSVLogger",
    "Callback",
    "Distillation",
    "EarlyStopping",
    "ModelCheckpoint",
    "MonitorCallback",
    "PhaseFreezing",
    "ProgressBar",
    "ReduceLROnPlateau",
    "RunLogger",
    "SnapshotEnsemble",
    "TensorBoard",
    "TerminateOnNaN",
    "WeightAveraging",
]
