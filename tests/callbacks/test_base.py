"""MonitorCallback: EarlyStopping, ReduceLROnPlateau and ModelCheckpoint agree on what improves."""

from __future__ import annotations

import pytest

from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau

MONITORS = [
    pytest.param(lambda **kw: EarlyStopping(patience=10, **kw), id="early_stopping"),
    pytest.param(lambda **kw: ReduceLROnPlateau(patience=10, **kw), id="reduce_lr_on_plateau"),
    pytest.param(lambda **kw: ModelCheckpoint(**kw), id="model_checkpoint"),
]

# (values, threshold_mode, key, best value, best epoch), min_delta 0.1 throughout; epochs are
# numbered from 1 (values[0] is epoch 1).
THRESHOLDS = [
    # relative: 9.5 is not below 10 * 0.9; 8.9 is below 9.0; 8.5 and 8.2 are not below 8.9 * 0.9 = 8.01
    pytest.param([10.0, 9.5, 8.9, 8.5, 8.2], "rel", "valid/loss", 8.9, 3, id="rel-min"),
    # absolute: every value is more than 0.1 below the previous best
    pytest.param([10.0, 9.5, 8.9, 8.5, 8.2], "abs", "valid/loss", 8.2, 5, id="abs-min"),
    # relative on accuracy: 0.54 is not above 0.55; 0.56 is; 0.6 and 0.61 are not above 0.616
    pytest.param([0.5, 0.54, 0.56, 0.6, 0.61], "rel", "valid/accuracy", 0.56, 3, id="rel-max"),
    # absolute on accuracy: 0.54 is not above 0.5 + 0.1; 0.65 is; 0.7 is not above 0.75; 0.8 is
    pytest.param([0.5, 0.54, 0.65, 0.7, 0.8], "abs", "valid/accuracy", 0.8, 5, id="abs-max"),
]


@pytest.mark.parametrize("make_monitor", MONITORS)
@pytest.mark.parametrize(("values", "threshold_mode", "key", "best", "best_epoch"), THRESHOLDS)
def test_every_monitor_counts_the_same_improvements(make_learner, scripted_metric, tmp_path, make_monitor,
                                                     values, threshold_mode, key, best, best_epoch):
    monitor = make_monitor(monitor=key, min_delta=0.1, threshold_mode=threshold_mode)
    make_learner(tmp_path, [scripted_metric(values, key=key), monitor]).fit(len(values))
    assert monitor.best == best
    if hasattr(monitor, "best_epoch"):  # ReduceLROnPlateau keeps only the value
        assert monitor.best_epoch == best_epoch
