"""From recipe to run and back, in-process: resume, fine-tuning, tabular, export, inference errors."""

from __future__ import annotations

import json
import math
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from epochal.callbacks.base import Callback
from epochal.cli.main import app
from epochal.config import ConfigError, load_config
from epochal.config.builders import build_callbacks, callback_registry, load_matching_weights, mixup_alpha_for
from epochal.config.data_builders import _resolve_augment
from epochal.config.experiment import build_learner, train

runner = CliRunner()
TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[8,16,16]", "callbacks.progress_bar=null"]


@pytest.fixture(scope="module")
def rgb(tmp_path_factory, make_colour_folder) -> Path:
    return make_colour_folder(
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
    # Roll the run back to the end of epoch 1, as if it had crashed there.
    (run / "checkpoints" / "last.pt").unlink()  # it may be a hard link of epoch_0002.pt
    shutil.copy(run / "checkpoints" / "epoch_0001.pt", run / "checkpoints" / "last.pt")
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


def test_finetune_freezes_then_unfreezes_and_loads_matching_weights(run2, tmp_path, make_colour_folder):
    folder = make_colour_folder(tmp_path / "two", {"cyan": (30, 200, 200), "yellow": (200, 200, 30)}, n=8)
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
    valid = "valid values are ['embeddings', 'onnx', 'safetensors', 'torchscript']"
    assert result.exit_code == 1 and valid in result.output


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


def test_train_into_a_given_folder_with_extra_callbacks(rgb, tmp_path):
    from epochal.callbacks.base import Callback

    class CountEpochs(Callback):
        def __init__(self):
            self.epochs = 0

        def after_epoch(self):
            self.epochs += 1

    config = load_config("default", [*TINY, f"data.path={rgb}", "epochs=2", "trainer.plots=false"])
    counter = CountEpochs()
    result = train(config, run_dir=tmp_path / "trial_0003", progress=False, callbacks=[counter])
    assert result["run_dir"] == str(tmp_path / "trial_0003") and counter.epochs == 2
    assert (tmp_path / "trial_0003" / "summary.json").is_file()
    assert list(tmp_path.iterdir()) == [tmp_path / "trial_0003"]  # no dated folder beside it
    with pytest.raises(ConfigError, match="already holds a run"):  # never trains over a finished run
        train(config, run_dir=tmp_path / "trial_0003", progress=False)


@pytest.fixture
def uneven(tmp_path, make_colour_folder) -> Path:
    """Two colours: 15 red and 5 green images."""
    make_colour_folder(tmp_path / "uneven", {"red": (200, 30, 30)}, n=15)
    return make_colour_folder(tmp_path / "uneven", {"green": (30, 200, 30)}, n=5)


def test_balanced_class_weights_come_from_the_training_split(uneven):
    folder = uneven
    config = load_config("default", [*TINY, f"data.path={folder}", "loss.weight=balanced", "epochs=1"])
    learner, phases = build_learner(config, device="cpu", progress=False)
    counts = learner.data.info["class_counts"]  # training images per class, in class order
    n, k = sum(counts.values()), len(counts)
    expected = [n / (k * c) for c in counts.values()]
    assert list(counts) == ["green", "red"] and learner.loss_fn.weight.tolist() == pytest.approx(expected)
    assert learner.loss_fn.weight.device == learner.device
    learner.fit(phases)
    assert math.isfinite(learner.history[-1]["valid/loss"])


def test_class_weight_lists_are_checked_against_the_classes_and_saved_runs_reuse_them(uneven, tmp_path):
    folder = uneven
    config = load_config("default", [*TINY, f"data.path={folder}", "loss.weight=[1, 2, 3]"])
    with pytest.raises(ValueError, match=r"loss.weight has 3 values but the data has 2 classes \['green', 'red'\]"):
        build_learner(config, device="cpu", progress=False)
    config = load_config("default", [*TINY, f"data.path={folder}", "loss.weight=[3.0, 1.0]", "epochs=1"])
    result = train(config, out=tmp_path / "runs", progress=False)
    evaluated = invoke("eval", result["run_dir"], "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.splitlines()[-1])["metrics"]["loss"] == pytest.approx(
        result["metrics"]["loss"], rel=1e-5
    )


def test_multi_label_pos_weight_balanced_is_negatives_over_positives(tiny_multi_label):
    config = load_config(
        "default",
        [*TINY, f"data.path={tiny_multi_label}", "loss={name: bce_with_logits, pos_weight: balanced}", "metrics=[mAP]"],
    )
    learner, phases = build_learner(config, device="cpu", progress=False)
    positives = learner.data.train.targets.sum(0).cpu()
    n = len(learner.data.train.targets)
    assert learner.loss_fn.pos_weight.tolist() == pytest.approx(((n - positives) / positives).tolist())
    learner.fit(phases)
    with pytest.raises(ValueError, match=r"loss compares predictions with one class per sample.*multi-label"):
        build_learner(load_config("default", [*TINY, f"data.path={tiny_multi_label}"]), device="cpu", progress=False)


def test_loss_buffers_follow_the_learner_to_its_device():
    from torch import nn

    from epochal.data.base import ArrayLoader
    from epochal.learner import Learner

    x, y = torch.randn(8, 3), torch.arange(8) % 2
    loss = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0]))
    # the meta device stands for any accelerator: a weight left on the CPU would not be moved there
    learner = Learner(nn.Linear(3, 2), (ArrayLoader(x, y, 4), ArrayLoader(x, y, 4)), loss=loss, device="meta")
    assert learner.loss_fn.weight.device.type == "meta"


@pytest.mark.gpu
def test_class_weights_follow_the_learner_to_cuda(uneven):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    folder = uneven
    config = load_config("default", [*TINY, f"data.path={folder}", "loss.weight=balanced", "epochs=1"])
    learner, phases = build_learner(config, device="cuda", progress=False)
    assert learner.loss_fn.weight.device.type == "cuda"
    learner.fit(phases)
    assert math.isfinite(learner.history[-1]["valid/loss"])


TABLE = ["data.batch_size=32", "callbacks.progress_bar=null", "model.hidden=[16]", "epochs=3"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_onehot_table_trains_evaluates_predicts_and_exports(tiny_table, tmp_path):
    # 6 epochs: the recipe's periodic embeddings of the numbers need more than TABLE's 9 steps on 96 rows
    overrides = [*TABLE, f"data.path={tiny_table}", "data.target=y", "data.options.encoding=onehot", "epochs=6"]
    result = train(load_config("tabular-adult", overrides), out=tmp_path / "runs", progress=False)
    run = result["run_dir"]
    assert result["metrics"]["accuracy"] > 0.6
    assert json.loads((Path(run) / "data.json").read_text())["encoding"] == "onehot"
    evaluated = invoke("eval", run, "--data", tiny_table, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.splitlines()[-1])["n"] == 120
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("colour,size,weight\nred,1.0,0.1\nblue,-1.0,0.3\n")
    predicted = invoke("predict", run, unlabelled, "--top-k", "2", "--json")
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout.splitlines()[-1])["predictions"]
    assert [r["row"] for r in rows] == [0, 1] and all({c for c, _ in r["top"]} == {"no", "yes"} for r in rows)
    exported = invoke("export", run, "--format", "torchscript", "--out", tmp_path / "m.pt", "--json")
    assert exported.exit_code == 0, exported.output
    from epochal.config.inference import restore_model

    model = restore_model(run)[0]
    x = model.example_input(4)
    assert torch.allclose(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x), atol=1e-5)


def test_regression_table_trains_with_a_one_output_head(tiny_regression_table, tmp_path):
    config = load_config(
        "tabular-adult",
        [
            *TABLE,
            f"data.path={tiny_regression_table}",
            "data.target=y",
            "data.balance=null",
            "trainer.decision=null",  # a threshold between two classes; a regression has none
            "model={name: tabular_mlp, hidden: [16]}",
            "loss={name: mse}",
            "metrics=[]",
            "callbacks.model_checkpoint={monitor: valid/loss}",
        ],
    )
    result = train(config, out=tmp_path / "runs", progress=False)
    first = json.loads((Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()[0])
    assert result["metrics"]["loss"] < first["valid/loss"]  # learns y = 2 size + weight
    evaluated = invoke("eval", result["run_dir"], "--data", tiny_regression_table, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    balanced = load_config("tabular-adult", [*TABLE, f"data.path={tiny_regression_table}", "data.target=y",
                                             "loss={name: mse}", "metrics=[]", "model.init_bias=default",
                                             "data.balance=oversample", "trainer.decision=null"])
    with pytest.raises(ValueError, match=r"balance='oversample' needs class labels.*regression target"):
        build_learner(balanced, device="cpu", progress=False)


@pytest.mark.slow  # the whole Adult CSV; test_onehot_table_trains_evaluates_predicts_and_exports is its fast twin
@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_onehot_adult_trains_and_its_run_evaluates_predicts_and_exports(adult_csv, tmp_path):
    trained = invoke(
        "train", "tabular-adult", "--data", adult_csv, "--epochs", "1", "--set", "data.options.encoding=onehot",
        "--set", "callbacks.progress_bar=null", "--out", tmp_path, "--json",
    )
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout.splitlines()[-1])
    assert result["metrics"]["auroc"] > 0.85  # one epoch of an MLP on one-hot census columns
    evaluated = invoke("eval", result["run_dir"], "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.splitlines()[-1])["metrics"]["auroc"] == pytest.approx(
        result["metrics"]["auroc"], rel=1e-5
    )
    predicted = invoke("predict", result["run_dir"], adult_csv, "--json")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout.splitlines()[-1])["n"] > 30000
    exported = invoke("export", result["run_dir"], "--format", "torchscript", "--json")
    assert exported.exit_code == 0, exported.output


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
    # step 6 of 12: the line is at 6 / 11; the whitening bias trains for 3 of 4 epochs (9 steps), its
    # compressed line at 6 / 8 (every schedule reaches its end value on its last step)
    learner.schedule.apply(optimizer, 6)
    assert head["lr"] == pytest.approx(1340 * (1 - 6 / 11)) and whiten_bias["lr"] == pytest.approx(106 * (1 - 6 / 8))
    assert head["weight_decay"] == pytest.approx(1.99e-5) and whiten_bias["weight_decay"] == pytest.approx(2.5157e-4)
    learner.schedule.apply(optimizer, 9)
    assert whiten_bias["lr"] == 0.0
    assert all(np.isfinite(r["train/loss"]) for r in learner.history) and len(learner.history) == 4


class HostReadGuard(Callback):
    """Every read of a tensor's value by the host inside a training batch, with where it came from.

    On a GPU each such read (``.item()``, ``float(t)``, ``if t:``, a boolean-mask index, ``nonzero``)
    waits for the device's queue to drain; ``torch.cuda.set_sync_debug_mode`` catches them there
    (tests/data/test_data_gpu.py), this catches them on any machine, from ``before_batch`` to
    ``after_batch``: forward, loss, backward, the optimizer, the schedule, every callback's events.
    The learner's one read of the running loss every ``log_every`` steps (``Learner._log``) is
    allowed. Making the batch is left out: on a CPU its augmentations read their own host-side index
    maps by design (``remap``), and the GPU test checks the loaders on the device.
    """

    READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero")

    def __init__(self, monkeypatch):
        self.monkeypatch, self.armed, self.reads, self.batches = monkeypatch, False, [], 0
        for name in self.READS:
            self._watch(torch.Tensor, name)
        for name in ("nonzero", "unique", "masked_select", "argwhere"):
            self._watch(torch, name)
        for name in ("__getitem__", "__setitem__"):
            self._watch(torch.Tensor, name, only=lambda args: _has_bool_mask(args[1]))

    def _watch(self, owner, name, only=None):
        original = getattr(owner, name)

        def watched(*args, **kwargs):
            if self.armed and (only is None or only(args)):
                self.reads.append(f"{name} at {traceback.format_stack(limit=2)[0].strip()}")
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, watched)

    def before_fit(self):
        log = self.learner._log

        def allowed_log():
            self.armed, armed = False, self.armed
            try:
                log()
            finally:
                self.armed = armed

        self.learner._log = allowed_log

    def before_batch(self):
        self.armed = self.learner.training

    def after_batch(self):
        self.batches += self.armed
        self.armed = False


def _has_bool_mask(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in parts)


@pytest.mark.parametrize("callbacks", [[], sorted(set(callback_registry()) - {"swa", "snapshot_ensemble"})],
                         ids=["recipe", "every-callback"])
def test_speedrun_training_batches_never_read_a_tensor_on_the_host(callbacks, rgb, monkeypatch, tmp_path):
    """The speed run's training step (Muon, per-group rates, the whitening bias retired after 3 of
    4 epochs, the running loss every 5 steps), alone and with every callback that fits its schedule
    at its defaults, leaves the device's queue alone: on a GPU a read would stall it once a step."""
    config = load_config("cifar10-speedrun", ["data.path=" + str(rgb), *SPEEDRUN, "trainer.log_every=5"])
    learner, phases = build_learner(config, device="cpu", progress=False, run_dir=tmp_path)
    guard = HostReadGuard(monkeypatch)
    for callback in [*build_callbacks({name: {"log_dir": str(tmp_path)} if name == "tensorboard" else {}
                                       for name in callbacks}), guard]:
        learner.add_callback(callback)
    learner.fit(phases)
    monkeypatch.undo()
    assert guard.batches == 12 and learner.history[-1]["train/loss"] > 0
    assert guard.reads == []


def test_the_host_read_guard_sees_a_read(rgb, monkeypatch):
    """The guard above would fail on a per-step ``.item()`` (here a callback's) and a boolean-mask index."""

    class ReadsTheLoss(Callback):
        def after_loss(self):
            self.learner.loss.item()
            self.learner.yb[self.learner.yb > 0]

    config = load_config("cifar10-speedrun", ["data.path=" + str(rgb), *SPEEDRUN, "epochs=1"])
    learner, phases = build_learner(config, device="cpu", progress=False)
    guard = HostReadGuard(monkeypatch)
    learner.add_callback(guard)
    learner.add_callback(ReadsTheLoss())
    learner.fit(phases)
    monkeypatch.undo()
    assert sum(r.startswith("item") for r in guard.reads) == 3
    assert sum(r.startswith("__getitem__") for r in guard.reads) == 3


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


@pytest.mark.parametrize(("epochs", "lengths"), [(1, [0.25, 0.75]), (16, [4.0, 12.0]), (8, [2.0, 6.0])])
def test_epochs_scales_listed_phases_and_says_so(epochs, lengths, capsys):
    from epochal.cli.train import recipe_config

    config = recipe_config("finetune", [], epochs=epochs)  # head 2 + all 6 epochs
    assert [p["epochs"] for p in config.phases] == lengths and config.epochs == epochs
    assert [p["name"] for p in config.phases] == ["head", "all"] and config.phases[0]["freeze"] is True
    note = capsys.readouterr().err
    if epochs == 8:
        assert note == ""  # nothing to scale
    else:
        assert f"--epochs {epochs}: the recipe lists 2 phases of 8 epochs in all (head 2, all 6)" in note
        assert f"head {lengths[0]:g}, all {lengths[1]:g}" in note


def test_epochs_of_a_schedule_builder_recipe_is_not_rescaled(capsys):
    from epochal.config.experiment import scale_phases

    config = load_config("default", epochs=3)
    assert scale_phases(config, 3) == (config, None) and config.epochs == 3


def test_table_predict_top_k_csv_unreadable_inputs_and_eval_without_the_target(tiny_table, tmp_path):
    overrides = [*TABLE, f"data.path={tiny_table}", "data.target=y", "epochs=1"]
    run = train(load_config("tabular-adult", overrides), out=tmp_path / "runs", progress=False)["run_dir"]
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("colour,size,weight\nred,1.0,0.1\nblue,-1.0,0.3\n")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    out = tmp_path / "preds.csv"
    text = invoke("predict", run, unlabelled, bad, tmp_path / "gone.csv", "--top-k", "2", "--out", out)
    assert text.exit_code == 0, text.output  # two unreadable inputs of three: predicted the readable one
    lines = [line for line in text.stdout.splitlines() if line.startswith(str(unlabelled))]
    assert [line.split("\t")[0] for line in lines] == [f"{unlabelled}:0", f"{unlabelled}:1"]
    assert all({line.split("\t")[1], line.split("\t")[3]} == {"no", "yes"} for line in lines)  # both classes
    assert f"skipped {bad}: " in text.stderr and f"skipped {tmp_path / 'gone.csv'}: no such CSV file" in text.stderr
    header, *rows = out.read_text().splitlines()
    assert header == "path,row,class,probability,class_2,probability_2" and len(rows) == 2
    assert {rows[0].split(",")[2], rows[0].split(",")[4]} == {"no", "yes"}

    strict = invoke("predict", run, unlabelled, bad, "--strict")
    assert strict.exit_code == 1 and "--strict and 1 of the inputs could not be read" in strict.stderr
    nothing = invoke("predict", run, bad, "--json")
    assert nothing.exit_code == 1 and "1 of the inputs could not be read" in nothing.stderr

    evaluated = invoke("eval", run, "--data", unlabelled)  # the CSV has no target column y
    assert evaluated.exit_code == 1 and "KeyError" not in evaluated.stderr
    assert "column 'y' (the target column the run was trained to predict) is missing" in evaluated.stderr
    assert "the file has the columns: colour, size, weight" in evaluated.stderr


def test_trainer_retain_host_memory_reaches_the_learner(rgb):
    for overrides, expected in (([], True), (["trainer.retain_host_memory=false"], False)):
        config = load_config("default", [*TINY, f"data.path={rgb}", *overrides])
        learner, _ = build_learner(config, device="cpu", progress=False)
        assert learner.retain_host_memory is expected
