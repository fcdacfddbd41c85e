"""benchmarks/speedrun.py: the recipe and the plain loop on a tiny input, and the plain loop's numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from epochal.config import load_config
from epochal.config.groups import build_group_rules

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speedrun.py"


def _script():
    spec = importlib.util.spec_from_file_location("speedrun", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plain_loop_uses_the_recipes_numbers():
    plain = _script().PLAIN
    config = load_config("cifar10-speedrun")
    model, opt = config.model.kwargs, config.optimizer
    assert (plain["widths"], plain["scale"], plain["head_std"]) == (tuple(model["widths"]), model["scale"],
                                                                   model["head_std"])
    assert (plain["whiten_images"], plain["batch_size"]) == (config.model.data_init, config.data.batch_size)
    assert plain["label_smoothing"] == config.loss.kwargs["label_smoothing"]
    assert (plain["filter_lr"], plain["filter_momentum"], plain["ns_steps"]) == (opt.lr, opt.momentum,
                                                                                 opt.kwargs["ns_steps"])
    whiten, norms, head = build_group_rules(opt)
    assert whiten.params == ("stem.whiten.bias",) and whiten.train_epochs == plain["whiten_bias_epochs"]
    for rule, lr, wd in ((whiten, "bias_lr", "bias_wd"), (norms, "bias_lr", "bias_wd"), (head, "head_lr", "head_wd")):
        assert rule.lr_scale * opt.lr == pytest.approx(plain[lr])
        assert rule.wd_scale * opt.weight_decay == pytest.approx(plain[wd])
        assert (rule.momentum, rule.muon) == (plain["sgd_momentum"], False)
    assert config.data.augment == ["alternating_flip", f"translate(pad={plain['translate']})"]


@pytest.mark.realdata
def test_speedrun_times_the_recipe_and_the_plain_loop(shared_dir):
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    args = ["--archive", str(archive), "--images", "300", "--valid", "100", "--epochs", "1", "--runs", "1",
            "--first-seed", "3", "--batch-size", "100", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.strip().splitlines() if line.startswith("{")]
    assert len(lines) == 2 and lines[1]["complete"] and not lines[0]["complete"]  # a line per finished run
    assert "learner" in lines[0] and "plain" not in lines[0] and "learner_over_plain" not in lines[0]
    result = lines[1]
    assert (result["benchmark"], result["device"], result["train_images"], result["valid_images"]) == (
        "speedrun", "cpu", 200, 100)
    assert (result["evaluated_on"], result["test"], result["overrides"]) == ("held_out", None, [])
    settings = (result["epochs"], result["steps_per_epoch"], result["precision"], result["compile"], result["seeds"])
    assert settings == (1, 2, "fp32", False, [3]) and result["compile_mode"] is None and not result["fresh_models"]
    for loop in ("learner", "plain"):
        summary = result[loop]
        assert len(summary["seconds"]) == 1 and summary["median_s"] > 0 and summary["warmup_s"] > 0
        assert 0 < summary["median_epoch_s"] <= summary["median_s"]
        # airbench's accounting: the epochs plus set-up and TTA, inside the whole run's span
        assert summary["median_epoch_s"] < summary["median_airbench_s"] <= summary["median_s"]
        assert summary["airbench_s"] == [summary["median_airbench_s"]]
        assert len(summary["epoch_s"]) == 1 and summary["epoch_s"][0] == [summary["median_epoch_s"]]  # 1 run x 1 epoch
        for key in ("tta_accuracy", "accuracy"):
            assert len(summary[key]["values"]) == 1 and 0 <= summary[key]["mean"] <= 1
    assert result["learner_over_plain"] == pytest.approx(
        result["learner"]["median_s"] / result["plain"]["median_s"], rel=0.01)
    assert result["learner_over_plain_airbench"] == pytest.approx(
        result["learner"]["median_airbench_s"] / result["plain"]["median_airbench_s"], rel=0.01)
    assert result["targets"]["learner_over_plain"] == 1.05 and result["targets"]["gpu_median_s"] == 1.69
    assert result["prepare_s"] > 0 and len(result["load_average_after"]) == 3
    assert result["cpu"]["capability"] and result["cpu"]["cores"] >= 1


def test_speedrun_names_a_missing_archive(tmp_path):
    missing = tmp_path / "nope.tar.gz"
    done = subprocess.run([sys.executable, str(SCRIPT), "--archive", str(missing)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0 and str(missing) in done.stderr


@pytest.mark.realdata
def test_speedrun_can_train_on_every_image(shared_dir):
    """--valid 0, as the GPU suite times the target: every image trains and the timed evaluation runs on
    training images (reported as such); --set reaches the recipe."""
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    args = ["--archive", str(archive), "--images", "200", "--valid", "0", "--eval-images", "50", "--epochs", "1",
            "--runs", "1", "--batch-size", "100", "--device", "cpu", "--warmup-epochs", "0", "--no-plain",
            "--set", "loss.label_smoothing=0.1"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["train_images"], result["valid_images"], result["steps_per_epoch"]) == (200, 50, 2)
    assert result["evaluated_on"] == "training_images" and result["overrides"] == ["loss.label_smoothing=0.1"]
    assert result["complete"] and len(result["learner"]["seconds"]) == 1 and "plain" not in result


def _image_tree(root: Path, classes=("cat", "dog"), per_class=3) -> None:
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / name / f"{i:04d}.jpg")


def test_speedrun_test_images_from_a_folder_or_an_archive(tmp_path):
    speedrun = _script()
    _image_tree(tmp_path / "tree" / "cifar10" / "test")
    assert speedrun.test_root(tmp_path / "tree", tmp_path / "work") == tmp_path / "tree" / "cifar10" / "test"
    with tarfile.open(tmp_path / "test.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "cifar10", arcname="cifar10")
    root = speedrun.test_root(tmp_path / "test.tar.gz", tmp_path / "work")
    assert root == tmp_path / "work" / "cifar10" / "test"
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"] and len(list(root.glob("*/*.jpg"))) == 6


def test_speedrun_names_bad_test_images(tmp_path):
    speedrun = _script()
    (tmp_path / "empty" / "only").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no class folders of images"):
        speedrun.test_root(tmp_path / "empty", tmp_path / "work")
    with pytest.raises(SystemExit, match="not found"):
        speedrun.test_root(tmp_path / "missing", tmp_path / "work")
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(SystemExit, match="neither a folder nor a tar archive"):
        speedrun.test_root(tmp_path / "notes.txt", tmp_path / "work")


def test_the_gpu_suites_speed_runs_parse_and_time_every_image():
    """The suite's speedrun commands are valid arguments, and the timed one trains on all 50,000 images."""
    import shlex

    text = (SCRIPT.parent / "gpu_suite.sh").read_text().replace("\\\n", " ")
    commands = [shlex.split(line.split("benchmarks/speedrun.py", 1)[1].replace('"$archive"', "A"))
                for line in text.splitlines() if line.startswith("step speedrun")]
    assert len(commands) == 3
    timed, autotuned, heldout = (_script().parse_args(c) for c in commands)
    for run in (timed, autotuned):
        assert (run.images, run.valid, run.test, run.device) == (50_000, 0, None, "cuda")
        assert run.warmup_epochs > 3 and not run.no_plain  # past the whitening bias's 3 epochs; the ratio too
    assert timed.overrides == [] and autotuned.overrides == ["trainer.compile_mode=max-autotune"]
    config = load_config("cifar10-speedrun", autotuned.overrides)  # a mode the installed torch knows
    assert config.trainer.compile_mode == "max-autotune"
    assert (heldout.images, heldout.valid, heldout.device, heldout.no_plain) == (50_000, 5_000, "cuda", True)
    assert heldout.runs >= 3


def _noise_tree(root: Path, classes=("cat", "dog", "owl"), per_class=8) -> Path:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (torch.rand(32, 32, 3, generator=g) * 120 + 60 * k).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / name / f"{i:04d}.png")
    return root


def test_a_reused_model_trains_exactly_as_a_fresh_one(tmp_path):
    """One model object per loop, reset in place each run (airbench's way, so CUDA graphs replay):
    the run after a warm-up ends with the weights a fresh model gets, in both loops."""
    from epochal.config.builders import build_data

    speedrun, cpu = _script(), torch.device("cpu")
    overrides = [f"data.path={_noise_tree(tmp_path / 'images')}", "data.valid_pct=0.25", "data.batch_size=6",
                 "model.data_init=20", "callbacks.progress_bar=null", "trainer.device=cpu", "epochs=4"]
    config = load_config("cifar10-speedrun", overrides)
    data = build_data(config, cpu)
    tensors = speedrun.plain_tensors(data)
    runs = {
        "learner": lambda seed, slot: speedrun.learner_run(config, data, cpu, seed, slot),
        "plain": lambda seed, slot: speedrun.plain_run(tensors, cpu, seed, 4, "fp32", False, None, slot),
    }
    for name, run in runs.items():
        kept, fresh = speedrun.ModelSlot(), speedrun.ModelSlot(reuse=False)
        run(10_000, kept)  # the warm-up: trains the kept model and retires its whitening bias
        model = kept.model
        pointers = [p.data_ptr() for p in model.parameters()]
        reused, new = run(3, kept), run(3, fresh)
        assert kept.model is model and [p.data_ptr() for p in model.parameters()] == pointers, name
        assert fresh.model is not model
        for key, value in fresh.model.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (name, key)
        assert (reused["tta_accuracy"], reused["accuracy"]) == (new["tta_accuracy"], new["accuracy"])
