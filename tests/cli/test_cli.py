"""The ``epochal`` command line, run in subprocesses on tiny data: outputs, files and error handling."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.data import get_dataset

TINY_NET = ["--set", "model.widths=[8,16,16]"]


def run_cli(*args, cwd=None, check=True, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "epochal.cli.main", *map(str, args)],
        capture_output=True,
        check=False,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"epochal {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def last_json(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def trained(work) -> dict:
    """The default recipe (bundled cifar10-mini) for one epoch with a tiny network on 16x16 images."""
    proc = run_cli(
        "train",
        "--epochs",
        "1",
        *TINY_NET,
        "--set",
        "data.image_size=16",
        "--set",
        "tags=[smoke]",
        "--out",
        work / "runs",
        "--json",
    )
    result = last_json(proc)
    result["stderr"] = proc.stderr
    return result


@pytest.fixture(scope="module")
def tiny_folder(work) -> Path:
    """Three colour classes of twelve noisy 16x16 PNG images."""
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("green", (30, 200, 30)), ("blue", (30, 30, 200))):
        (work / "tiny" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(work / "tiny" / name / f"{i}.png")
    return work / "tiny"


@pytest.fixture(scope="module")
def eval_folder(work) -> Path:
    """Two images of each cifar10-mini class, copied into a labelled folder."""
    source, folder = get_dataset("cifar10-mini"), work / "eval"
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        (folder / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:2]:
            shutil.copy(image, folder / class_dir.name / image.name)
    return folder


def test_train_default_recipe_writes_a_complete_run_folder(trained):
    run = Path(trained["run_dir"])
    assert trained["epochs"] == 1 and set(trained) >= {
        "run_dir",
        "epochs",
        "metrics",
        "best",
        "wall_s",
        "skipped_files",
    }
    assert set(trained["metrics"]) == {"loss", "accuracy"} and 0.0 <= trained["metrics"]["accuracy"] <= 1.0
    assert trained["metrics"]["accuracy"] > 0.12  # better than chance (0.1) after one epoch
    assert trained["skipped_files"] == [] and trained["wall_s"] > 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["epochs"] == 1 and config["model"]["widths"] == [8, 16, 16] and config["tags"] == ["smoke"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["final"]["valid/accuracy"] == trained["metrics"]["accuracy"]
    data = json.loads((run / "data.json").read_text())
    assert len(data["classes"]) == 10 and data["input_shape"] == [3, 16, 16]
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    for plot in ("curves", "schedule", "confusion_matrix"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 5000
    assert "epoch 1/1" in trained["stderr"]  # progress goes to stderr, stdout ends with the JSON


def test_eval_with_and_without_tta(trained, eval_folder):
    plain = last_json(run_cli("eval", trained["run_dir"], "--data", eval_folder, "--json"))
    assert plain["n"] == 20 and set(plain["metrics"]) == {"loss", "accuracy"}
    assert plain["metrics"]["accuracy"] in {i / 20 for i in range(21)}
    tta = last_json(
        run_cli(
            "eval",
            Path(trained["run_dir"]) / "checkpoints" / "last.pt",
            "--data",
            eval_folder,
            "--tta",
            "--json",
        )
    )
    assert tta["n"] == 20 and tta["metrics"]["loss"] != plain["metrics"]["loss"]  # flipped views change logits


def test_eval_without_data_reproduces_the_runs_own_validation_numbers(trained):
    result = last_json(run_cli("eval", trained["run_dir"], "--json"))
    summary = json.loads((Path(trained["run_dir"]) / "summary.json").read_text())
    assert result["n"] == 400 and "validation split of cifar10-mini" in result["data"]
    assert result["metrics"]["accuracy"] == summary["best"]["valid/accuracy"]["value"]
    assert result["metrics"]["loss"] == pytest.approx(summary["best"]["valid/loss"]["value"], rel=1e-5)


def test_predict_folder_and_csv(trained, eval_folder, work):
    out = work / "preds.csv"
    result = last_json(run_cli("predict", trained["run_dir"], eval_folder, "--top-k", "3", "--out", out, "--json"))
    classes = json.loads((Path(trained["run_dir"]) / "data.json").read_text())["classes"]
    assert result["n"] == 20 and len(out.read_text().splitlines()) == 21
    for row in result["predictions"]:
        assert row["class"] in classes and len(row["top"]) == 3
        probs = [p for _, p in row["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_export_safetensors_matches_checkpoint(trained, work):
    from safetensors.torch import load_file

    result = last_json(
        run_cli(
            "export",
            trained["run_dir"],
            "--format",
            "safetensors",
            "--out",
            work / "model.safetensors",
            "--json",
        )
    )
    weights = load_file(result["path"])
    state = torch.load(result["checkpoint"], weights_only=True)["model"]
    assert weights.keys() == state.keys() and all(torch.equal(weights[k], state[k]) for k in state)


def test_models_recipes_lists():
    from epochal.models import list_models

    models = last_json(run_cli("models", "regnetx_00*", "--json"))["models"]
    assert [m["name"] for m in models] == list_models("regnetx_00*") == [f"regnetx_00{i}" for i in (2, 4, 6, 8)]
    regnet = next(m for m in models if m["name"] == "regnetx_002")
    assert regnet["family"] == "regnet" and regnet["params"] == 2684792 and regnet["macs"] > 1e8
    recipes = last_json(run_cli("recipes", "--json"))["recipes"]
    assert {"default", "cifar10", "regnet-imagenet", "finetune", "tabular-adult"} <= {r["name"] for r in recipes}


def test_runs_and_compare(trained, work):
    root = work / "runs"
    first = Path(trained["run_dir"])
    second = root / (first.name + "-copy")
    shutil.copytree(first, second)
    config = yaml.safe_load((second / "config.yaml").read_text())
    config["optimizer"]["lr"] = 0.05
    config["tags"] = ["other"]
    (second / "config.yaml").write_text(yaml.safe_dump(config))
    summary = json.loads((second / "summary.json").read_text())
    summary["final"]["valid/accuracy"] = 0.99
    (second / "summary.json").write_text(json.dumps(summary))
    runs = last_json(run_cli("runs", "--root", root, "--sort", "accuracy", "--json"))["runs"]
    assert [r["run_dir"] for r in runs] == [str(second), str(first)] and runs[0]["metrics"]["accuracy"] == 0.99
    tagged = CliRunner().invoke(app, ["runs", "--root", str(root), "--tag", "smoke", "--json"])
    tagged = json.loads(tagged.stdout.splitlines()[-1])["runs"]
    assert [r["run_dir"] for r in tagged] == [str(first)]
    compared = last_json(run_cli("compare", first, second, "--json"))
    assert compared["config"]["optimizer.lr"] == [0.2, 0.05] and compared["config"]["tags"] == [
        ["smoke"],
        ["other"],
    ]
    assert compared["metrics"]["accuracy"][1] == 0.99


def test_lr_find_and_plot_schedule(work, tiny_folder):
    lr = last_json(
        run_cli(
            "lr-find",
            "--data",
            tiny_folder,
            *TINY_NET,
            "--set",
            "data.image_size=16",
            "--num",
            "20",
            "--out",
            work / "lr.png",
            "--json",
        )
    )
    assert lr["suggestion"] > 0 and Path(lr["plot"]).stat().st_size > 5000 and lr["steps"] <= 20
    schedule = last_json(
        run_cli(
            "plot-schedule",
            "--epochs",
            "3",
            "--steps-per-epoch",
            "10",
            "--out",
            work / "schedule.png",
            "--json",
        )
    )
    assert schedule["total_steps"] == 30 and Path(schedule["plot"]).stat().st_size > 5000


def test_user_errors_are_one_line_without_traceback(work):
    proc = run_cli("train", "--set", "optimizer.lrr=0.1", "--json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "did you mean 'lr'" in proc.stderr
    assert "did you mean 'lr'" in last_json(proc)["error"]


@pytest.mark.slow
def test_default_recipe_real_run(tmp_path):
    """`epochal train` with no arguments: the quick start on cifar10-mini (a few minutes on 2 CPU cores)."""
    proc = run_cli("train", "--out", tmp_path, "--json", cwd=tmp_path, timeout=1800)
    result = last_json(proc)
    assert result["epochs"] == 15 and result["skipped_files"] == []
    assert result["metrics"]["accuracy"] >= 0.55  # measured 0.6375 (seed 0); chance is 0.10
    run = Path(result["run_dir"])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 15
    assert sorted(p.name for p in (run / "plots").iterdir()) == [
        "confusion_matrix.png",
        "curves.png",
        "schedule.png",
    ]


def test_tables_keep_each_row_on_one_line_when_piped(trained, work):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # pytest sets COLUMNS=80
    args = [sys.executable, "-m", "epochal.cli.main", "runs", "--root", str(work / "runs")]
    table = subprocess.run(args, capture_output=True, text=True, env=env, check=True, timeout=120).stdout
    name = Path(trained["run_dir"]).name
    row = next((line for line in table.splitlines() if name in line), table)
    assert "default" in row and "finished" in row  # not folded over two lines at 80 columns
    narrow = subprocess.run(args, capture_output=True, text=True, env={**env, "COLUMNS": "60"}, check=True).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 60  # an explicit COLUMNS is respected


def test_tune_with_two_workers_prints_the_trial_count(work, tiny_folder):
    """``epochal tune --trials 4 --workers 2 --json``: one JSON line, four trials in the default SQLite study."""
    pytest.importorskip("optuna", reason="the search needs the extra: pip install 'epochal[tune]'")
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump({"monitor": "valid/accuracy", "params": {
        "optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
        "model.widths": {"type": "categorical", "choices": [[4, 8, 8], [8, 8, 8]]}}}))
    tiny = [f"data.path={tiny_folder}", "data.image_size=16", "data.batch_size=8", "epochs=2",
            "callbacks.progress_bar=null", "trainer.plots=false"]
    proc = run_cli("tune", "default", "--space", space, "--trials", "4", "--workers", "2", "--threads", "1",
                   "--out", work / "studies", "--json", *[a for o in tiny for a in ("--set", o)], timeout=900)
    result = last_json(proc)
    assert result["trials"] == 4 and result["storage"].startswith("sqlite:///")
    study_dir = Path(result["study_dir"])
    assert sorted(p.name for p in (study_dir / "trials").iterdir()) == [f"trial_{n:04d}" for n in range(4)]
    assert set(result["best_params"]) <= {"optimizer.lr", "model.widths"} and Path(result["best_yaml"]).is_file()
    listed = last_json(run_cli("runs", "--root", work / "studies", "--study", result["study"], "--json"))["runs"]
    assert [(r["trial"], r["study"]) for r in listed] == [(n, result["study"]) for n in range(4)]


def test_tune_refuses_a_space_key_the_recipe_does_not_have(work):
    pytest.importorskip("optuna", reason="the search needs the extra: pip install 'epochal[tune]'")
    space = work / "typo.yaml"
    space.write_text("params:\n  optimizer.lrr: {type: float, low: 0.01, high: 0.5}\n")
    proc = run_cli("tune", "--space", space, "--out", work / "typo-studies", "--json", check=False)
    assert proc.returncode == 1 and not (work / "typo-studies").exists()  # refused before any study exists
    assert "params.optimizer.lrr" in proc.stderr and "did you mean 'lr'" in proc.stderr
    assert "did you mean 'lr'" in last_json(proc)["error"]


HOLD_LOCK = "import sys\nfrom epochal.runs import run_lock\nwith run_lock(sys.argv[1]):\n" \
            "    print('LOCKED', flush=True)\n    sys.stdin.read()\n"


def _copy_run(trained, work, name: str) -> Path:
    copy = work / "copies" / name
    shutil.copytree(trained["run_dir"], copy)
    return copy


def test_resume_while_another_process_trains_the_run_fails_at_once(trained, work):
    run = _copy_run(trained, work, "locked")
    before = (run / "metrics.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        proc = run_cli("train", "--resume", run, "--json", check=False)
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert f"is being trained by process {holder.pid} on " in proc.stderr and "RunLockedError" not in proc.stderr
    assert "process" in last_json(proc)["error"]
    assert (run / "metrics.jsonl").read_text() == before


def test_resume_from_an_empty_checkpoint_says_it_is_empty(trained, work):
    run = _copy_run(trained, work, "empty")
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    proc = run_cli("train", "--resume", run, check=False)
    assert proc.returncode == 1 and "IndexError" not in proc.stderr
    assert f"checkpoint {run / 'checkpoints' / 'last.pt'} is empty (0 bytes)" in proc.stderr


def test_resume_before_the_first_checkpoint_gives_the_command_that_starts_it_again(trained, work):
    run = _copy_run(trained, work, "killed-early")
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.unlink()
    proc = run_cli("train", "--resume", run, check=False)
    assert proc.returncode == 1 and "no checkpoint yet" in proc.stderr and "not a run folder" not in proc.stderr
    args = shlex.split(proc.stderr.split("in a new run folder: ", 1)[1])
    assert args == ["epochal", "train", str(run / "config.yaml"), "--out", str(run.parent)]
    again = last_json(run_cli(*args[1:], "--json"))
    assert Path(again["run_dir"]).parent == run.parent and again["epochs"] == trained["epochs"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_train_says_what_runs_and_what_happened(trained):
    run = Path(trained["run_dir"])
    err = trained["stderr"]  # --json: both blocks go to stderr, stdout ends with the JSON line
    start = err[: err.index("epoch 1/1")]
    for label, value in (("recipe", "default"), ("device", "cpu, fp32"), ("run folder", str(run)),
                         ("data", "1,600 train / 400 valid, 10 classes"), ("schedule", "one_cycle, 1 epochs")):
        assert any(line.split()[: len(label.split())] == label.split() and value in line
                   for line in start.splitlines()), (label, start)
    from epochal.config.inference import restore_model

    params = sum(p.numel() for p in restore_model(run)[0].parameters())
    assert f", {params:,} parameters" in start and "batch size 64, 25 steps per epoch, 25 steps in all" in start
    end = err[err.index("result"):]
    assert "finished: 1 epoch" in end and "final (epoch 1)" in end and "wall time" in end
    assert f"{run / 'checkpoints' / 'best.pt'} (epoch 1, the best valid/accuracy)" in end
    assert trained["status"] == "finished" and trained["final"]["epoch"] == 1
    weights = trained["final_weights"]
    assert weights["source"] == "last" and weights["checkpoint"] == "checkpoints/last.pt" and weights["epoch"] == 1
    assert trained["best_epochs"]["accuracy"] == {"value": trained["best"]["accuracy"], "epoch": 1}


def test_run_files_have_the_umask_mode_and_no_empty_tensorboard_folder(trained):
    run = Path(trained["run_dir"])
    expected = 0o666 & ~_umask()
    for path in ("config.yaml", "data.json", "metrics.jsonl", "summary.json", "checkpoints/last.pt",
                 "checkpoints/best.pt", "plots/curves.png"):
        assert (run / path).stat().st_mode & 0o777 == expected, path
    assert not (run / "tensorboard").exists()  # only a run with the TensorBoard callback has one


def test_resume_of_a_finished_run_says_it_is_finished_and_how_to_train_longer(trained, work):
    run = _copy_run(trained, work, "finished")
    before = (run / "summary.json").read_text()
    proc = run_cli("train", "--resume", run, check=False)
    assert proc.returncode == 1 and "nothing to continue: the run finished its 1 epoch" in proc.stderr
    assert f"epochal train {run / 'config.yaml'} --epochs 2 --out {run.parent}" in proc.stderr
    assert f"--set model.weights={run}" in proc.stderr
    assert (run / "summary.json").read_text() == before  # nothing was rewritten


def test_eval_warns_when_the_images_are_the_runs_own_and_names_its_checkpoint(trained, eval_folder, work):
    proc = run_cli("eval", trained["run_dir"], "--data", eval_folder, "--json")
    result = last_json(proc)
    overlap = result["overlap"]  # eval_folder copies 20 cifar10-mini images: 1,600 trained on, 400 validated
    assert overlap["of"] == 20 and overlap["train"] + overlap["valid"] == 20 and overlap["train"] > 0
    assert f"warning: {overlap['train']} of the run's training images" in proc.stderr
    info = result["checkpoint_info"]
    assert result["checkpoint"].endswith("best.pt") and (info["epoch"], info["batch"], info["is_final"]) == (1, 0, True)
    assert "the epoch that summary.json's final describes (epoch 1)" in info["text"]

    fresh = work / "fresh"  # new images under the same class names: nothing to warn about
    for name in json.loads((Path(trained["run_dir"]) / "data.json").read_text())["classes"]:
        (fresh / name).mkdir(parents=True)
        pixels = np.random.default_rng(len(name)).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(fresh / name / "new.png")
    proc = run_cli("eval", trained["run_dir"], "--data", fresh, "--json")
    assert last_json(proc)["overlap"] == {"of": 10, "train": 0, "valid": 0} and "warning" not in proc.stderr


def test_predict_lists_top_k_in_text_and_csv_and_skips_unreadable_images(trained, eval_folder, work):
    broken = work / "broken"
    broken.mkdir()
    (broken / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = sorted((eval_folder / "cat").iterdir())
    out = work / "top3.csv"
    proc = run_cli("predict", trained["run_dir"], *good, broken / "truncated.png", work / "missing.png",
                   "--top-k", "3", "--out", out)
    classes = json.loads((Path(trained["run_dir"]) / "data.json").read_text())["classes"]
    lines = [line.split("\t") for line in proc.stdout.splitlines() if line.strip()]
    assert [cells[0] for cells in lines] == [str(p) for p in good]
    for cells in lines:  # path, then three (class, probability) pairs, most probable first
        assert len(cells) == 7 and set(cells[1::2]) <= set(classes) and len(set(cells[1::2])) == 3
        probs = [float(p) for p in cells[2::2]]
        assert probs == sorted(probs, reverse=True)
    assert f"skipped {broken / 'truncated.png'}: " in proc.stderr
    assert f"skipped {work / 'missing.png'}: no such file or folder" in proc.stderr
    header, *rows = out.read_text().splitlines()
    assert header == "path,class,probability,class_2,probability_2,class_3,probability_3" and len(rows) == 2
    assert [row.split(",")[1::2] for row in rows] == [cells[1::2] for cells in lines]
    strict = run_cli("predict", trained["run_dir"], *good, broken, "--strict", check=False)
    assert strict.returncode == 1 and "--strict and 1 of the inputs could not be read" in strict.stderr
    nothing = run_cli("predict", trained["run_dir"], broken / "truncated.png", "--json", check=False)
    assert nothing.returncode == 1 and "could not be read" in last_json(nothing)["error"]


def test_predict_of_an_ensemble_skips_unreadable_images_and_writes_top_k_csv(trained, eval_folder, work):
    """Ensemble members before the images (main's averaging) with the skipped inputs, --strict and CSV."""
    run = Path(trained["run_dir"])
    good = sorted((eval_folder / "cat").iterdir())
    out = work / "ensemble_top2.csv"
    proc = run_cli("predict", run, run / "checkpoints" / "last.pt", *good, work / "missing.png",
                   "--top-k", "2", "--out", out, "--json")
    result = last_json(proc)
    assert [r["path"] for r in result["predictions"]] == [str(p) for p in good]
    assert result["failed"] == [{"path": str(work / "missing.png"), "error": "no such file or folder"}]
    assert f"skipped {work / 'missing.png'}: no such file or folder" in proc.stderr
    header, *rows = out.read_text().splitlines()
    assert header == "path,class,probability,class_2,probability_2" and len(rows) == len(good)
    assert [row.split(",")[1] for row in rows] == [r["class"] for r in result["predictions"]]
    strict = run_cli("predict", run, run, *good, work / "missing.png", "--strict", check=False)
    assert strict.returncode == 1 and "--strict and 1 of the inputs could not be read" in strict.stderr

def _sigint_as_from_a_terminal() -> None:
    """In the child, before exec: SIGINT back to its default, which Python turns into KeyboardInterrupt.

    A test runner started as a background job inherits SIGINT ignored, and so would the child:
    the signal the test sends would then do nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)



def test_ctrl_c_of_epochal_train_saves_the_position_prints_the_resume_command_and_it_finishes(work):
    """A real ``epochal train`` process given SIGINT in its second epoch: exit 130, the message names
    where it stopped and the exact ``--resume`` command, and that command finishes the run."""
    out = work / "interrupted"
    child = subprocess.Popen(
        [sys.executable, "-m", "epochal.cli.main", "train", "--epochs", "4", *TINY_NET,
         "--set", "data.image_size=16", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_from_a_terminal,
    )
    try:
        before = []
        for line in child.stderr:  # the progress line of epoch 1 comes at its end: epochs 2-4 are left
            before.append(line)
            if line.startswith("epoch 1/4"):
                break
        assert child.poll() is None, "".join(before)[-3000:]
        child.send_signal(signal.SIGINT)
        stdout, rest = child.communicate(timeout=300)
        stderr = "".join(before) + rest
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr[-3000:]
    (run,) = out.iterdir()
    assert "interrupted (SIGINT) at epoch 2" in stderr or "interrupted (SIGINT) at the end of epoch" in stderr
    command = next(line for line in stderr.splitlines() if line.startswith("continue with: "))
    assert command == f"continue with: epochal train --resume {shlex.quote(str(run))}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["step"] == summary["steps"] > 0

    resumed = run_cli(*shlex.split(command.removeprefix("continue with: epochal ")), "--json")
    assert last_json(resumed)["status"] == "finished"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 4
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
