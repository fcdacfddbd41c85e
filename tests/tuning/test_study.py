"""Whole searches: parallel workers on SQLite, the journal and PostgreSQL, failures, SIGKILL, resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from epochal.config import ConfigError, load_config
from epochal.config.builders import register_callback
from epochal.runs.registry import list_runs

HERE = Path(__file__).resolve().parent

#: Learning rate and width, sampled by TPE.
SPACE = {
    "monitor": "valid/accuracy",
    "sampler": {"name": "tpe", "n_startup_trials": 2},
    "params": {
        "optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
        "model.widths": {"type": "categorical", "choices": [[4, 8, 8], [8, 8, 8]]},
    },
}

#: Odd trials are stopped after their first epoch, even ones complete (see tune_helpers.ScriptedAccuracy).
PRUNED_ODD = {**SPACE, "pruner": {"name": "threshold", "lower": 0.3}}


@pytest.fixture
def helpers(monkeypatch):
    """The test callbacks, registered by name and importable in worker processes."""
    monkeypatch.syspath_prepend(str(HERE))
    import tune_helpers

    register_callback("scripted_accuracy", tune_helpers.ScriptedAccuracy)
    register_callback("block_on_trial", tune_helpers.BlockOnTrial)
    yield tune_helpers
    from epochal.config import builders

    builders._REGISTERED_CALLBACKS.pop("scripted_accuracy", None)
    builders._REGISTERED_CALLBACKS.pop("block_on_trial", None)


def _search(tmp_path, overrides, storage=None, trials=6, workers=2, space=PRUNED_ODD, **kwargs):
    from epochal.tuning import tune

    return tune("default", space, trials=trials, workers=workers, storage=storage, out=tmp_path / "runs",
                overrides=["callbacks.scripted_accuracy={}", *overrides], threads=1, **kwargs)


def _check_pruned_odd(check_study, result, n_trials):
    rows = check_study(result, n_trials, allowed=("complete", "pruned"))
    assert [r["state"] for r in rows] == ["complete" if n % 2 == 0 else "pruned" for n in range(n_trials)]
    for row in rows:  # a pruned trial stopped after its first epoch, a complete one ran both
        epochs = len((Path(row["run_dir"]) / "metrics.jsonl").read_text().splitlines())
        assert epochs == (2 if row["state"] == "complete" else 1)
    assert result["best_value"] == pytest.approx(0.61) and result["best_trial"] % 2 == 0
    best = load_config(result["best_yaml"])  # epochal train best.yaml loads it
    assert best.optimizer.lr == pytest.approx(result["best_params"]["optimizer.lr"])
    assert "trial " + str(result["best_trial"]) in Path(result["best_yaml"]).read_text().splitlines()[0]
    return rows


def test_two_workers_on_the_journal_lose_and_duplicate_no_trial(tmp_path, tiny_overrides, helpers, check_study):
    result = _search(tmp_path, tiny_overrides, storage="journal")
    assert result["storage"].startswith("journal://") and Path(result["study_dir"], "journal.log").is_file()
    rows = _check_pruned_odd(check_study, result, 6)
    assert (Path(result["study_dir"]) / "best_trial" / "summary.json").is_file()
    assert {Path(p).name for p in result["plots"].values()} == {"history.png", "slices.png"}
    listed = list_runs(tmp_path / "runs", study=result["study"])
    assert [(r.trial, r.trial_state) for r in listed] == [(r["number"], r["state"]) for r in rows]


def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_study_completes(
    tmp_path, tiny_overrides, helpers, check_study
):
    fifo = tmp_path / "victim"
    os.mkfifo(fifo)
    outcome: dict = {}
    overrides = [*tiny_overrides, f"callbacks.block_on_trial={{trial: 1, fifo: {fifo}}}"]
    search = threading.Thread(target=lambda: outcome.update(_search(tmp_path, overrides, trials=5)))
    search.start()
    with open(fifo) as handle:  # blocks until trial 1 is mid-fit in its worker
        victim = int(handle.read())
    os.kill(victim, signal.SIGKILL)
    search.join(timeout=600)
    assert not search.is_alive() and outcome, "the search did not finish after its worker was killed"
    rows = check_study(outcome, 5)
    assert rows[1]["state"] == "failed" and f"pid {victim}" in rows[1]["error"]
    assert [r["state"] for i, r in enumerate(rows) if i != 1] == ["complete", "complete", "pruned", "complete"]
    record = json.loads((Path(rows[1]["run_dir"]) / "trial.json").read_text())
    assert record["state"] == "failed" and f"pid {victim}" in record["error"]


def _trial_errors(result) -> dict[int, str]:
    rows = json.loads((Path(result["study_dir"]) / "study.json").read_text())["trials"]
    return {r["number"]: r["error"] for r in rows if r["state"] == "failed"}


def test_failed_trials_are_recorded_and_the_study_resumes(tmp_path, tiny_overrides, helpers, check_study):
    overrides = [*tiny_overrides, "callbacks.scripted_accuracy.fail=1"]
    first = _search(tmp_path, overrides, trials=3, workers=1)
    assert first["states"] == {"complete": 2, "pruned": 0, "failed": 1, "running": 0}
    assert _trial_errors(first) == {1: "RuntimeError: scripted failure"}
    again = _search(tmp_path, overrides, trials=5, workers=1)  # the same study, up to 5 in total
    rows = check_study(again, 5, allowed=("complete", "pruned", "failed"))
    assert [r["state"] for r in rows] == ["complete", "failed", "complete", "pruned", "complete"]
    assert rows[0]["params"] == json.loads((Path(first["study_dir"]) / "trials/trial_0000/trial.json")
                                           .read_text())["params"]
    with pytest.raises(ConfigError, match="started with another space"):
        _search(tmp_path, overrides, trials=6, workers=1, space={**PRUNED_ODD, "params": {
            "optimizer.lr": {"type": "float", "low": 0.1, "high": 0.2}}})


def test_sampled_values_the_recipe_refuses_fail_only_their_trial(tmp_path, tiny_overrides, check_study):
    from epochal.tuning import tune

    space = {"sampler": "grid", "params": {  # nesterov without a `when: {optimizer.name: sgd}`
        "optimizer.name": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "optimizer.nesterov": {"type": "categorical", "choices": [True, False]},
    }}
    overrides = [*tiny_overrides, "optimizer={name: sgd, lr: 0.1}"]
    result = tune("default", space, trials=10, out=tmp_path / "runs", overrides=overrides, threads=1)
    rows = check_study(result, 4)  # the grid has 4 combinations: the study stops there
    failed = [r for r in rows if r["state"] == "failed"]
    assert sorted(r["params"]["optimizer.nesterov"] for r in failed) == [False, True]
    assert all(r["params"]["optimizer.name"] == "adamw" and "unknown key 'nesterov'" in r["error"] for r in failed)
    for row in failed:  # a folder with its trial.json, no training
        assert not (Path(row["run_dir"]) / "summary.json").exists()
    assert {r.trial for r in list_runs(tmp_path / "runs")} == {0, 1, 2, 3}


# ----------------------------------------------------------------------------- PostgreSQL
def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as 'nobody' then."""
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own in a temporary folder, on a free port of 127.0.0.1."""
    binaries = _postgres_bin()
    if binaries is None or not (binaries / "pg_ctl").is_file():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver: pip install 'epochal[postgres]'")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    folder = Path(tempfile.mkdtemp(prefix="epochal-pg-"))  # not pytest's tmp: the server user must enter it
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody")
    data = folder / "data"
    subprocess.run(_as_server_user([str(binaries / "initdb"), "-D", str(data), "-U", "epochal", "--auth=trust",
                                    "--no-sync", "-E", "UTF8"]), check=True, capture_output=True, timeout=300)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"),
                                    "-o", options, "-w", "-t", "120", "start"]),
                   check=True, capture_output=True, timeout=300)
    try:
        yield f"postgresql+psycopg2://epochal@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                        "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_on_a_postgresql_server(tmp_path, tiny_overrides, helpers, postgres_url, check_study):
    result = _search(tmp_path, tiny_overrides, storage=postgres_url, study="pg-study")
    assert result["storage"] == postgres_url and not (Path(result["study_dir"]) / "study.db").exists()
    _check_pruned_odd(check_study, result, 6)
    import optuna

    summaries = optuna.get_all_study_summaries(postgres_url)  # the trials are in the server
    assert [(s.study_name, s.n_trials) for s in summaries] == [("pg-study", 6)]


@pytest.mark.parametrize(
    ("overrides", "monitor", "expected"),
    [
        ([], None, ("valid/accuracy", "maximize")),  # the default recipe's checkpoint monitor
        (["callbacks.model_checkpoint=null"], None, ("valid/loss", "minimize")),
        ([], "loss", ("valid/loss", "minimize")),
        (["metrics=[accuracy, error_rate]"], "error_rate", ("valid/error_rate", "minimize")),
    ],
)
def test_monitor_default_and_direction_from_the_metric(overrides, monitor, expected):
    from epochal.tuning.study import resolve_monitor

    assert resolve_monitor(load_config("default", overrides), monitor) == expected


def test_unlogged_monitor_and_missing_space_are_refused(tmp_path):
    from epochal.tuning import tune
    from epochal.tuning.study import resolve_monitor

    with pytest.raises(ConfigError, match="'valid/acuracy' is not logged.*did you mean 'valid/accuracy'"):
        resolve_monitor(load_config("default"), "acuracy")
    with pytest.raises(ConfigError, match="no shipped search space.*--space"):
        tune("cifar10", None, out=tmp_path)


def test_missing_optuna_names_the_extra(monkeypatch):
    from epochal.tuning._optuna import require_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'epochal\[tune\]'"):
        require_optuna()


def test_trials_that_train_on_two_processes_each(tmp_path, tiny_overrides, helpers, check_study):
    """``epochal tune --nproc 2``: every trial is a torchrun job of 2 gloo processes; rank 0 reports to the
    study and its pruning decision stops both ranks; a job that fails fails its trial only, named."""
    import yaml
    from typer.testing import CliRunner

    from epochal.cli.main import app

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(PRUNED_ODD))
    sets = ["callbacks.scripted_accuracy={fail: 2}", *tiny_overrides]
    args = ["tune", "default", "--space", str(space), "--trials", "3", "--nproc", "2", "--threads", "1",
            "--out", str(tmp_path / "runs"), "--json", *[a for o in sets for a in ("--set", o)]]
    invoked = CliRunner().invoke(app, args)  # in this process: the test's registered callbacks reach the ranks
    assert invoked.exit_code == 0, invoked.output
    result = json.loads(invoked.stdout.strip().splitlines()[-1])
    rows = check_study(result, 3)
    assert [r["state"] for r in rows] == ["complete", "pruned", "failed"]
    failure = r"rank [01]: RuntimeError: scripted failure; every rank's output: .*torchrun\.log$"
    assert re.search(failure, rows[2]["error"]), rows[2]["error"]
    for row, epochs in zip(rows[:2], (2, 1), strict=True):
        folder = Path(row["run_dir"])
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["distributed"]["world_size"] == 2, summary["distributed"]
        assert len((folder / "metrics.jsonl").read_text().splitlines()) == epochs  # both ranks stopped there
        assert (folder / "torchrun.log").is_file()
        assert not (folder / "trial_launch.json").exists() and not (folder / "trial_result.json").exists()
    assert result["best_trial"] == 0 and result["best_value"] == pytest.approx(0.61)
