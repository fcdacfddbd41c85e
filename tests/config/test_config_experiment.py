"""From recipe to run and back, in-process: resume, fine-tuning, tabular, export, inference errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.config import load_config
from epochal.config.builders import (
    _resolve_augment,
    build_callbacks,
    callback_registry,
    load_matching_weights,
    mixup_alpha_for,
)
from epochal.config.experiment import build_learner, train

runner = CliRunner()
TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[8,16,16]", "callbacks.progress_bar=null"]


def colour_folder(root: Path, colours: dict[str, tuple[int, int, int]], n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def rgb(tmp_path_factory) -> Path:
    return colour_folder(
        tmp_path_factory.mktemp("rgb"), {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    )


@pytest.fixture(scope="module")
def run2(rgb, tmp_path_factory) -> dict:
    """A finished two-epoch run that kept a checkpoint of every epoch and ran a short LR finder first."""
    overrides = [
        "data.path=" + str(rgb),
        "epochs=2",
        "callbacks.model_checkpoint.keep_epochs=true",
        "trainer.lr_find=12",
    ]
    config = load_config("default", [*TINY, *overrides])
    return train(config, out=tmp_path_factory.mktemp("runs"), progress=False)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_resume_continues_exactly(run2):
    run = Path(run2["run_dir"])
    assert Path(run2["plots"]["lr_find"]).stat().st_size > 5000 and run2["lr_find"]["suggestion"] > 0
    final = json.loads((run / "summary.json").read_text())["final"]
    # Roll the run back to the end of epoch 0, as if it had crashed there.
    (run / "checkpoints" / "last.pt").unlink()  # it may be a hard link of epoch_0001.pt
    shutil.copy(run / "checkpoints" / "epoch_0000.pt", run / "checkpoints" / "last.pt")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n")
    result = invoke("train", "--resume", run, "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    resumed = json.loads(result.stdout.splitlines()[-1])
    assert resumed["epochs"] == 2 and resumed["run_dir"] == str(run)
    assert resumed["metrics"]["loss"] == pytest.approx(final["valid/loss"], rel=1e-6)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    bad = invoke("train", "--resume", run, "--epochs", "3")
    assert bad.exit_code == 1 and "drop --set" in bad.output


def test_finetune_freezes_then_unfreezes_and_loads_matching_weights(run2, tmp_path):
    folder = colour_folder(tmp_path / "two", {"cyan": (30, 200, 200), "yellow": (200, 200, 30)}, n=8)
    config = load_config(
        "finetune",
        [
            *TINY,
            f"data.path={folder}",
            f"model.weights={run2['run_dir']}",
            "phases.0.epochs=1",
            "phases.1.epochs=1",
            "epochs=2",
        ],
    )
    learner, phases = build_learner(config, device="cpu", progress=False)
    source = torch.load(Path(run2["run_dir"]) / "checkpoints" / "best.pt", weights_only=True)["model"]
    state = learner.model.state_dict()
    assert state["head.fc.weight"].shape[0] == 2
    body = [k for k in source if k.startswith("stages.") and source[k].is_floating_point()]
    assert body and all(torch.equal(state[k], source[k]) for k in body)
    freezing = next(cb for cb in learner.callbacks if type(cb).__name__ == "PhaseFreezing")
    learner.fit(phases)
    assert freezing.applied == [(0, -1), (1, 0)]
    assert all(p.requires_grad for name, p in learner.model.named_parameters() if "norm" not in name or "bias" in name)
    assert any(not torch.equal(learner.model.state_dict()[k], source[k]) for k in body)


def test_load_matching_weights_reports_skipped(run2):
    config = load_config("default", [*TINY])
    from epochal.models import create

    model = create("airbench", num_classes=5, widths=[8, 16, 16])
    report = load_matching_weights(model, run2["run_dir"])
    assert report["skipped"] == ["head.fc.weight"] and report["unused"] == ["head.fc.weight"]
    assert config.model.name == "airbench"


def test_tabular_recipe_trains_with_prior_bias(tmp_path):
    pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(0, 1, n)
    label = np.where((colour == "red") & (size > 0.3), ">50K", "<=50K")
    lines = ["colour,size,weight,income"] + [
        f"{c},{s:.3f},{rng.normal():.3f},{y}" for c, s, y in zip(colour, size, label)
    ]
    csv = tmp_path / "table.csv"
    csv.write_text("\n".join(lines) + "\n")
    config = load_config(
        "tabular-adult",
        [
            f"data.path={csv}",
            "epochs=6",
            "data.batch_size=32",
            "callbacks.progress_bar=null",
            "model.hidden=[16]",
        ],
    )
    learner, _ = build_learner(config, device="cpu", progress=False)
    positive = float((label == ">50K").mean())
    bias = learner.model.head.fc.bias.detach()
    assert (bias.softmax(0)[0] - (1 - positive)).abs() < 0.05  # classes sorted: '<=50K' first
    result = train(config, out=tmp_path / "runs", progress=False)
    assert set(result["metrics"]) == {"loss", "accuracy", "auroc"} and result["metrics"]["auroc"] > 0.8
    evaluated = invoke("eval", result["run_dir"], "--data", csv, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.splitlines()[-1])["n"] == n


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_export_torchscript_and_onnx_error(run2, tmp_path):
    from epochal.config.inference import restore_model

    result = invoke("export", run2["run_dir"], "--format", "torchscript", "--out", tmp_path / "m.pt", "--json")
    assert result.exit_code == 0, result.output
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    model = restore_model(run2["run_dir"])[0]
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)
    try:
        import onnx  # noqa: F401
    except ImportError:
        result = invoke("export", run2["run_dir"], "--format", "onnx", "--json")
        assert result.exit_code == 1 and "epochal[export]" in result.output and "Traceback" not in result.output
    result = invoke("export", run2["run_dir"], "--format", "tflite")
    assert result.exit_code == 1 and "valid values are ['onnx', 'safetensors', 'torchscript']" in result.output


def test_inference_user_errors(run2, rgb, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run2["run_dir"], broken)
    (broken / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    result = invoke("eval", broken, "--data", rgb)
    assert result.exit_code == 1 and "could not be read" in result.output and "Traceback" not in result.output
    result = invoke("eval", run2["run_dir"], "--data", tmp_path / "missing")
    assert result.exit_code == 1 and "does not exist" in result.output
    result = invoke("eval", tmp_path, "--data", rgb)
    assert result.exit_code == 1 and "has no checkpoints" in result.output
    result = invoke("train", "--data", tmp_path / "nowhere", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout.splitlines()[-1])["error"].startswith("data path")


def test_mixup_alpha_grows_with_model_size():
    assert mixup_alpha_for(2e8) == 0.1 and mixup_alpha_for(1.6e9) == 0.2 and mixup_alpha_for(32e9) == 0.4
    spec = [{"name": "mixup", "alpha": "auto"}, "flip"]
    assert _resolve_augment(spec, "regnetx_002")[0]["alpha"] == 0.1
    assert _resolve_augment(spec, "regnety_320")[0]["alpha"] == 0.4
    assert spec[0]["alpha"] == "auto"


@pytest.mark.parametrize("name", sorted(callback_registry()))
def test_every_registered_callback_builds_by_name(name, tmp_path):
    kwargs = {"log_dir": str(tmp_path)} if name == "tensorboard" else {}
    (callback,) = build_callbacks({name: kwargs})
    assert type(callback) is callback_registry()[name]
    assert build_callbacks({name: None}) == [] and build_callbacks({name: False}) == []


def test_a_run_that_fails_before_training_leaves_no_folder(rgb, tmp_path):
    out = tmp_path / "runs"
    (out / "earlier").mkdir(parents=True)
    (out / "earlier" / "summary.json").write_text("{}")
    empty = tmp_path / "no-images"
    (empty / "cat").mkdir(parents=True)
    config = load_config("default", [*TINY, "data.path=" + str(empty)])
    with pytest.raises(ValueError, match="no-images"):
        train(config, out=out, progress=False)
    assert [p.name for p in out.iterdir()] == ["earlier"]  # nothing new, nothing removed


def test_remove_if_empty_keeps_any_folder_with_a_file(tmp_path):
    from epochal.runs.folder import create_run_dir, remove_if_empty

    empty, used = create_run_dir(tmp_path, "a"), create_run_dir(tmp_path, "b")
    (used / "checkpoints" / "last.pt").write_bytes(b"x")
    assert remove_if_empty(empty) and not empty.exists()
    assert not remove_if_empty(used) and (used / "checkpoints" / "last.pt").exists()


SPEEDRUN = ["data.batch_size=8", "data.valid_pct=0.25", "model.data_init=20", "callbacks.progress_bar=null",
            "epochs=4"]


def test_speedrun_recipe_builds_airbench94_muon_and_trains(rgb):
    from epochal.models import AirbenchNet
    from epochal.optim import Muon

    config = load_config("cifar10-speedrun", ["data.path=" + str(rgb), *SPEEDRUN])
    learner, phases = build_learner(config, device="cpu", progress=False)
    assert (learner.precision, learner.compile, learner.channels_last) == ("fp32", False, True)  # auto on a CPU
    whiten = learner.model.stem.whiten.weight
    reference = AirbenchNet(num_classes=3)
    reference.init_whitening(learner.data.train.sample_images(20, config.seed))
    assert not whiten.requires_grad and torch.equal(whiten, reference.stem.whiten.weight)
    learner.fit(phases)
    optimizer = learner.optimizer
    assert isinstance(optimizer, Muon) and learner.schedule.total_steps == 12  # 27 images, 3 batches, 4 epochs
    by_rule = {}
    for group in optimizer.param_groups:
        by_rule.setdefault(group["name"].rsplit(".", 1)[-1], []).append(group)
    assert {n for g in by_rule["norm_biases"] for n in g["param_names"]} == {
        n for n, _ in learner.model.named_parameters() if "norm" in n and n.endswith("bias")}
    (head,), (whiten_bias,) = by_rule["head"], by_rule["whiten_bias"]
    assert head["param_names"] == ["head.fc.weight"] and whiten_bias["param_names"] == ["stem.whiten.bias"]
    assert all(g["muon"] is False and g["momentum"] == 0.85 for gs in by_rule.values() for g in gs if "rule" in g)
    filters = [g for g in optimizer.param_groups if "rule" not in g and not g["norm_or_bias"]]
    assert all(g["momentum"] == 0.6 for g in filters)
    assert all(n.endswith("weight") for g in filters for n in g["param_names"])
    learner.schedule.apply(optimizer, 6)  # at half-time: the whitening bias trains for 3 of 4 epochs
    assert head["lr"] == pytest.approx(1340 * 0.5) and whiten_bias["lr"] == pytest.approx(106 * (1 - 6 / 9))
    assert head["weight_decay"] == pytest.approx(1.99e-5) and whiten_bias["weight_decay"] == pytest.approx(2.5157e-4)
    learner.schedule.apply(optimizer, 9)
    assert whiten_bias["lr"] == 0.0
    assert all(np.isfinite(r["train/loss"]) for r in learner.history) and len(learner.history) == 4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.groups=[{params: head.*, lrr: 1}]", r"optimizer.groups.0: unknown key 'lrr'.*did you mean 'lr'"),
        ("optimizer.groups=[{lr: 1}]", "optimizer.groups.0 needs 'params'"),
        ("optimizer.groups=[{params: x, lr: 1, lr_scale: 2}]", "gives both lr and lr_scale"),
        ("optimizer.weight_decay=0", r"groups.0.weight_decay is relative to optimizer.weight_decay, which is 0"),
        ("optimizer.groups=[{params: x, momentum: 1.5}]", "momentum must be < 1"),
    ],
)
def test_speedrun_group_rules_are_checked_when_the_recipe_loads(override, message):
    from epochal.config.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config("cifar10-speedrun", [override])


def test_data_init_needs_a_model_with_init_from_data(rgb):
    tiny = [o for o in TINY if not o.startswith("model.")]
    config = load_config("default", [*tiny, "data.path=" + str(rgb), "model={name: resnet18, data_init: 4}"])
    with pytest.raises(ValueError, match="model 'resnet18' has no init_from_data"):
        build_learner(config, device="cpu", progress=False)


def test_auto_precision_and_compile_follow_the_device():
    from epochal.config.experiment import resolve_auto

    assert resolve_auto("auto", "cuda:1", "bf16", "fp32") == "bf16"
    assert resolve_auto("auto", "cpu", True, False) is False
    assert resolve_auto("fp16", "cpu", "bf16", "fp32") == "fp16"
