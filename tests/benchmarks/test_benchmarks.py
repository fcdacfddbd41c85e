"""The benchmark scripts run end to end on a small input and print consistent JSON.

They are measured elsewhere (README, issue notes); these tests keep them from rotting between
measurements, so a GPU session spends its time measuring, not debugging the scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loop_overhead_reports_the_ratio_of_the_two_loops():
    result = _run("loop_overhead.py", "--device", "cpu", "--samples", "256", "--batch-size", "32",
                  "--epochs", "1", "--repeats", "1", "--model", "mlp")
    assert (result["benchmark"], result["device"], result["model"], result["steps"]) == ("loop_overhead", "cpu",
                                                                                         "mlp", 8)
    assert result["plain_s"] > 0 and result["learner_s"] > 0
    assert result["ratio"] == pytest.approx(result["learner_s"] / result["plain_s"], rel=0.01)  # one pair
    overhead = (result["learner_s"] - result["plain_s"]) / result["steps"] * 1e6
    rounding = 2e-4 / result["steps"] * 1e6  # the times are rounded to 1e-4 s
    assert result["overhead_us_per_step"] == pytest.approx(overhead, abs=rounding)
    assert result["plain_cpu_s"] > 0 and result["learner_cpu_s"] > 0
    assert result["cpu_ratio"] == pytest.approx(result["learner_cpu_s"] / result["plain_cpu_s"], rel=0.01)
    assert result["target_ratio"] == 1.05 and len(result["load_average"]) == 3


@pytest.mark.realdata
def test_data_pipeline_measures_every_cpu_loader_against_the_plain_pipeline(shared_dir):
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    result = _run("data_pipeline.py", "--archive", str(archive), "--limit", "200", "--epochs", "1",
                  "--batch-size", "64", "--workers", "1", "--baseline-workers", "0", "--threads", "1")
    assert result["benchmark"] == "data_pipeline" and result["images"] == 200
    assert set(result["loader_img_per_s"]) == {"cpu", "stream"}
    plain = result["plain_pillow_dataloader_img_per_s"]
    assert plain > 0 and result["pack_img_per_s"] > 0
    for name, rate in result["loader_img_per_s"].items():
        assert rate > 0
        assert result["speedup_vs_plain"][name] == pytest.approx(rate / plain, abs=0.06)
    assert "needs --device cuda" in result["gpu_inception_crop_224_img_per_s"]
    assert result["targets"] == {"speedup_vs_plain": 10, "gpu_inception_crop_224_img_per_s": 20_000}


def test_data_pipeline_names_a_missing_archive(tmp_path):
    missing = tmp_path / "nope.tar.gz"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "data_pipeline.py"), "--archive", str(missing)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and str(missing) in done.stderr


def _fake_python(tmp_path: Path) -> Path:
    """A stand-in interpreter for gpu_suite.sh: passes the CUDA check, prints one JSON line per script."""
    fake = tmp_path / "fakepython"
    fake.write_text('#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then echo fake; exit 0; fi\n'
                    'echo "log line of $1"\necho "{\\"script\\": \\"$(basename "$1")\\"}"\n')
    fake.chmod(0o755)
    return fake


def test_gpu_suite_records_each_step_as_it_ends_and_respects_its_budget(tmp_path):
    env = {**os.environ, "PYTHON": str(_fake_python(tmp_path)), "SUITE_BUDGET_S": "600"}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    # the open issue's speed run first: its time target (all images train; default compile, then
    # airbench's max-autotune) and its held-out accuracy
    assert steps == ["speedrun", "speedrun_max_autotune", "speedrun_heldout", "gpu_tests", "loop_overhead_cnn",
                     "loop_overhead_mlp", "regnet_throughput", "data_pipeline"]
    assert rows[0]["result"] == {"script": "speedrun.py"} and rows[0]["rc"] == 0
    assert "log line of benchmarks/speedrun.py" in (tmp_path / "out" / "suite.log").read_text()
    # a device call returns 8 files at most: the suite leaves two
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.jsonl", "suite.log"]

    env["SUITE_BUDGET_S"] = "10"  # less than any step needs: every step is recorded as skipped
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), str(tmp_path / "out2")],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    rows = [json.loads(line) for line in (tmp_path / "out2" / "results.jsonl").read_text().splitlines()]
    assert rows and all(r["result"] == "skipped: budget spent" for r in rows)


def test_gpu_suite_stops_at_once_without_cuda(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    if "no CUDA device" not in done.stdout + done.stderr:
        pytest.skip("a CUDA device is present")
    assert done.returncode == 2


def test_feature_extraction_compares_cached_features_with_fine_tuning():
    result = _run("feature_extraction.py", "--epochs", "1", "--source-epochs", "1", "--widths", "[8,16,16]",
                  "--device", "cpu", "--threads", "1")
    assert result["benchmark"] == "feature_extraction" and result["epochs"] == 1
    assert result["finetune_s"] > 0 and result["features_cached_s"] > 0
    assert result["ratio"] == pytest.approx(result["features_cached_s"] / result["finetune_s"], rel=0.01)
    assert result["ratio_first"] == pytest.approx(result["features_first_s"] / result["finetune_s"], rel=0.01)
    assert 0 <= result["features_accuracy"] <= 1 and result["target_ratio"] == 0.1


def test_cpu_ceiling_counts_the_step_and_times_every_convolution():
    result = _run("cpu_ceiling.py", "--batch", "16", "--repeats", "1")
    assert (result["benchmark"], result["batch"]) == ("cpu_ceiling", 16)
    flops = result["step_tflop"]
    assert 0 < flops["whiten_bias_frozen"] < flops["whiten_bias_trained"]  # no input gradient for the first conv
    # 16 images of airbench94 (64-256-256): about 118 MMAC each forward, three times that for a step
    assert 3 * 2 * 110e6 * 16 / 1e12 < flops["whiten_bias_trained"] < 3 * 2 * 125e6 * 16 / 1e12
    convs = result["convs"]
    assert len(convs) == 6 and [c["out_channels"] for c in convs] == [64, 64, 256, 256, 256, 256]
    assert convs[0]["shape"] == [16, 24, 31, 31]  # after the 2x2 whitening conv
    floor = sum(c["forward_s"] + c["grad_input_s"] + c["grad_weight_s"] for c in convs)
    assert result["conv_floor_step_s"] == pytest.approx(floor, abs=1e-2)
    assert result["conv_floor_epoch_s_at_50000_images"] > 0
