"""What ``epochal train`` prints when a run is interrupted, and its end block for each way a run ends."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

from epochal.callbacks.save_on_interrupt import Interrupted
from epochal.cli.report import end_lines, interrupted_lines


def test_an_interrupt_mid_epoch_gives_the_position_and_the_resume_command(tmp_path):
    run = tmp_path / "runs" / "my run"
    stop = Interrupted(signal.SIGTERM, checkpoint=run / "checkpoints" / "last.pt",
                       position={"epoch": 2, "batch": 3, "step": 8, "total_steps": 15}, run_dir=run)
    lines = interrupted_lines(stop)
    assert lines[0] == "interrupted (SIGTERM) at epoch 2, after batch 3 (step 8 of 15)"
    assert lines[1] == f"saved the exact position to {run / 'checkpoints' / 'last.pt'}"
    assert shlex.split(lines[2].split(": ", 1)[1]) == ["epochal", "train", "--resume", str(run)]
    assert stop.exit_code == 143


def test_an_interrupt_before_training_says_nothing_was_trained(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: default\n")
    lines = interrupted_lines(Interrupted(signal.SIGINT, run_dir=run))
    assert lines[0] == "interrupted (SIGINT) before training started; nothing was trained"
    assert shlex.split(lines[1].split(": ", 1)[1]) == ["epochal", "train", str(run / "config.yaml"),
                                                        "--out", str(tmp_path)]


def test_the_end_block_of_an_early_stopped_run_names_the_reason_and_the_restored_weights():
    result = {"run_dir": "runs/a", "status": "stopped", "epochs": 7, "wall_s": 75.0,
              "stop_reason": "EarlyStopping: valid/loss did not improve on the best for 2 epochs",
              "metrics": {"loss": 0.9, "accuracy": 0.61}, "final": {"epoch": 7},
              "best_epochs": {"loss": {"value": 0.8, "epoch": 5}},
              "final_weights": {"source": "best", "description": "best: the weights of epoch 5 (restored by ...)"},
              "checkpoints": {"last": {"path": "runs/a/checkpoints/last.pt", "epoch": 7, "step": 70, "batch": 0}}}
    rows = dict(end_lines(result))
    assert rows["result"] == ("stopped early after epoch 7: EarlyStopping: valid/loss did not improve on the "
                              "best for 2 epochs")
    assert rows["final (epoch 7)"] == "loss 0.9  accuracy 0.61" and rows["best"] == "loss 0.8 (epoch 5)"
    assert rows["weights"].startswith("best: the weights of epoch 5") and rows["wall time"] == "75 s (0:01:15)"
    assert rows["last.pt"] == f"{Path('runs/a/checkpoints/last.pt')} (epoch 7)"


def test_the_device_line_names_the_compile_backend_and_mode():
    from types import SimpleNamespace

    from epochal.cli.report import _device_line

    def line(compile, mode=None):
        return _device_line(SimpleNamespace(device="cuda", precision="bf16", channels_last=True,
                                            compile=compile, compile_mode=mode))

    assert line(True, "max-autotune") == "cuda, bf16, channels-last, compiled (inductor, max-autotune)"
    assert line(True) == "cuda, bf16, channels-last, compiled (inductor)"
    assert line("eager", "max-autotune") == "cuda, bf16, channels-last, compiled (eager)"  # no mode there
    assert line(False, "max-autotune") == "cuda, bf16, channels-last"
