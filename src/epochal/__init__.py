"""epochal: deep-learning training with the best practices built in.

The public API, re-exported explicitly. Areas stay importable on their own:
``epochal.models``, ``epochal.data``, ``epochal.schedules``, ``epochal.optim``, ``epochal.callbacks``,
``epochal.tuning`` (``epochal.tune``: Optuna searches, with the extra ``epochal[tune]``),
``epochal.losses``, ``epochal.diagnostics`` (the sanity check).
"""

from epochal.callbacks import (
    Callback,
    CSVLogger,
    Distillation,
    EarlyStopping,
    ModelCheckpoint,
    MonitorCallback,
    PhaseFreezing,
    ProgressBar,
    ReduceLROnPlateau,
    RunLogger,
    TensorBoard,
    TerminateOnNaN,
)
from epochal.config import Config, ConfigError, list_recipes, load_config
from epochal.config.experiment import train as train_recipe
from epochal.data import get_dataset, image_folder_loaders, tabular_loaders
from epochal.data.base import ArrayLoader, DataLoaders, EpochLoader
from epochal.diagnostics import SanityReport, sanity_check
from epochal.events import (
    EVENTS,
    CancelBackward,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
)
from epochal.learner import Learner, LRFinderResult
from epochal.losses import DistillationLoss
from epochal.metrics import (
    AUROC,
    Accuracy,
    ErrorRate,
    MeanAveragePrecision,
    Metric,
    MultiLabelF1,
    TopKAccuracy,
    get_metric,
)
from epochal.models import create as create_model
from epochal.models import init_output_bias, list_models, model_summaries
from epochal.optim import (
    LAMB,
    LARS,
    SGDW,
    RMSpropW,
    build_optimizer,
    freeze,
    freeze_to,
    param_groups,
    unfreeze,
)
from epochal.runs import create_run_dir
from epochal.schedules import (
    PhaseSchedule,
    TrainingPhase,
    build_phases,
    constant,
    flat_cos,
    one_cycle,
    phases_1cycle,
    phases_sgdr,
    plot_lr_find,
    plot_schedule,
    sgdr,
    step_schedule,
    suggest_lr,
    warmup_cosine,
)
from epochal.state import CheckpointError, export_safetensors, load_checkpoint, seed_everything, seed_worker
from epochal.tuning import OptunaPruning, tune

__version__ = "0.1.0"

__all__ = [
    "AUROC",
    "EVENTS",
    "LAMB",
    "LARS",
    "SGDW",
    "Accuracy",
    "ArrayLoader",
    "CSVLogger",
    "Callback",
    "CancelBackward",
    "CancelBatch",
    "CancelEpoch",
    "CancelFit",
    "CancelStep",
    "CancelTrain",
    "CancelValidate",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataLoaders",
    "Distillation",
    "DistillationLoss",
    "EarlyStopping",
    "EpochLoader",
    "ErrorRate",
    "LRFinderResult",
    "Learner",
    "MeanAveragePrecision",
    "Metric",
    "ModelCheckpoint",
    "MonitorCallback",
    "MultiLabelF1",
    "OptunaPruning",
    "PhaseFreezing",
    "PhaseSchedule",
    "ProgressBar",
    "RMSpropW",
    "ReduceLROnPlateau",
    "RunLogger",
    "SanityReport",
    "TensorBoard",
    "TerminateOnNaN",
    "TopKAccuracy",
    "TrainingPhase",
    "__version__",
    "build_optimizer",
    "build_phases",
    "constant",
    "create_model",
    "create_run_dir",
    "export_safetensors",
    "flat_cos",
    "freeze",
    "freeze_to",
    "get_dataset",
    "get_metric",
    "image_folder_loaders",
    "init_output_bias",
    "list_models",
    "list_recipes",
    "load_checkpoint",
    "load_config",
    "model_summaries",
    "one_cycle",
    "param_groups",
    "phases_1cycle",
    "phases_sgdr",
    "plot_lr_find",
    "plot_schedule",
    "sanity_check",
    "seed_everything",
    "seed_worker",
    "sgdr",
    "step_schedule",
    "suggest_lr",
    "tabular_loaders",
    "train_recipe",
    "tune",
    "unfreeze",
    "warmup_cosine",
]
