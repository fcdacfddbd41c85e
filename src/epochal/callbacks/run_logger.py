"""RunLogger: writes a run folder's config.yaml, metrics.jsonl and summary.json."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from epochal.callbacks.base import Callback
from epochal.runs.folder import SUBFOLDERS, environment_info
from epochal.utils import atomic_write_text, json_safe, remove_stale_temps, write_json_atomic

__all__ = ["RunLogger"]

_EXACT = "exact: epochal loaders are addressed by (seed, epoch, batch index), so a resumed run reads the same batches"


class RunLogger(Callback):
    """Record the run in ``learner.run_dir``: added automatically when the learner has a run folder.

    ``metrics.jsonl`` gets one line per epoch (rewritten from the restored history on resume, so a
    crashed and resumed run has exactly one line per epoch); ``summary.json`` is rewritten after
    every epoch with ``status: "running"`` and at the end with the final status. Its
    ``mid_epoch_resume`` entry says whether a resume in the middle of an epoch is exact for the
    training data, and lists the epochs that a resume had to restart (see :meth:`resume_statement`);
    callbacks add their own keys through :meth:`~epochal.callbacks.base.Callback.run_summary` (SWA
    and EMA say which weights the run ends with under ``final_weights``).
    """

    order = 90
    rank_zero_only = True  # in a data-parallel job, rank 0 alone writes and prints

    def before_fit(self) -> None:
        run = self.learner.run_dir
        for sub in SUBFOLDERS:
            (run / sub).mkdir(parents=True, exist_ok=True)
        for folder in (run, run / "checkpoints"):
            remove_stale_temps(folder)  # left by writers killed mid-write; a live writer's file stays
        if self.learner.config:
            import yaml

            text = yaml.safe_dump(self.learner.config, sort_keys=False)
            atomic_write_text(run / "config.yaml", text)
        if self.learner.state.step > 0 or not (run / "metrics.jsonl").exists():
            # resumed: the restored history is the truth (drops epochs logged after the checkpoint)
            lines = "".join(json.dumps(json_safe(r)) + "\n" for r in self.learner.history)
            atomic_write_text(run / "metrics.jsonl", lines)
        self._start = time.perf_counter()
        self._start_samples = self.learner.state.samples
        previous = self._previous_summary()
        self._wall_before = float(previous.get("wall_s") or 0.0)
        self._restarted_before = list((previous.get("mid_epoch_resume") or {}).get("restarted") or [])
        self.status = "running"

    def _previous_summary(self) -> dict[str, Any]:
        """The summary of the run this fit resumes (empty for a fresh run or an unreadable file)."""
        path = self.learner.run_dir / "summary.json"
        if self.learner.state.step == 0 or not path.exists():
            return {}
        try:
            summary = json.loads(path.read_text())
        except (ValueError, OSError):
            return {}
        return summary if isinstance(summary, dict) else {}

    def resume_statement(self) -> dict[str, Any]:
        """Whether the training data resume exactly mid-epoch, in words, and the epochs resumes restarted.

        Loaders of one's own say so through ``resume_info()`` (:mod:`epochal.data.adapters`);
        epochal's loaders are addressed by (seed, epoch, batch index) and always resume exactly.
        """
        info = getattr(self.learner.data.train, "resume_info", None)
        statement = dict(info()) if callable(info) else {"exact": True, "note": _EXACT, "restarted": []}
        before = self._restarted_before
        return {**statement, "restarted": before + [r for r in statement.get("restarted", []) if r not in before]}

    def after_epoch(self) -> None:
        if not self.learner.history or self.learner.history[-1]["epoch"] != self.learner.state.epoch:
            return
        with open(self.learner.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(json_safe(self.learner.history[-1])) + "\n")
        self.write_summary()

    def after_cancel_fit(self) -> None:
        self.status = "stopped"

    def after_fit(self) -> None:
        if getattr(self.learner, "error", None) is not None:
            self.status = "interrupted" if isinstance(self.learner.error, KeyboardInterrupt) else "failed"
        elif self.status == "running":
            self.status = "finished"
        self.write_summary()

    def write_summary(self) -> dict[str, Any]:
        """Write ``summary.json`` now and return it."""
        learner = self.learner
        wall = time.perf_counter() - self._start
        world_size = learner.strategy.world.world_size
        final = {k: v for k, v in learner.history[-1].items() if "/" in k} if learner.history else {}
        summary = {
            "name": learner.run_dir.name,
            "status": self.status,
            "epochs": learner.state.epoch if self.status != "running" else len(learner.history),
            "steps": learner.state.step,
            "final": final,
            "best": self.best_metrics(),
            "wall_s": round(self._wall_before + wall, 3),
            # every rank trains as many samples as rank 0: the job's throughput is world size times this rank's
            "throughput": {"samples_per_s": (learner.state.samples - self._start_samples) * world_size / wall
                           if wall > 0 else None},
            "seed": learner.seed,
            "model": type(learner.model).__name__,
            "params": sum(p.numel() for p in learner.model.parameters()),
            "precision": learner.precision,
            "batch": learner.batch_summary(),  # global batch = per-rank x world size x grad_accum, lr scaling
            "distributed": learner.strategy.describe(),
            "mid_epoch_resume": self.resume_statement(),
            **environment_info(learner.device),
        }
        for callback in learner.callbacks:  # e.g. SWA's final_weights, SnapshotEnsemble's snapshots
            for key, value in callback.run_summary().items():
                merged = isinstance(value, dict) and isinstance(summary.get(key), dict)
                summary[key] = {**summary[key], **value} if merged else value
        write_json_atomic(learner.run_dir / "summary.json", summary)
        return summary

    def best_metrics(self) -> dict[str, dict[str, float]]:
        """The best value of every logged metric and its epoch, by the metric's own direction."""
        best: dict[str, dict[str, float]] = {}
        for record in self.learner.history:
            for key, value in record.items():
                if "/" not in key or value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                higher = self.learner.metric_directions.get(key, False)
                if key not in best or (value > best[key]["value"] if higher else value < best[key]["value"]):
                    best[key] = {"value": value, "epoch": record["epoch"]}
        return best

