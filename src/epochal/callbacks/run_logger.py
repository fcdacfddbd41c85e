"""RunLogger: writes a run folder's config.yaml, metrics.jsonl and summary.json."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from epochal.callbacks.base import Callback
from epochal.runs.folder import SUBFOLDERS, checkpoint_position, environment_info
from epochal.utils import atomic_write_text, json_safe, remove_stale_temps, write_json_atomic

__all__ = ["RunLogger"]


def _describe(entry: dict[str, Any], step: int) -> str:
    """``final_weights`` in words: ``best: the weights of epoch 3 (restored by ...), in checkpoints/best.pt``."""
    source, epoch = entry["source"], entry.get("epoch")
    if source == "best":
        text = f"best: the weights of epoch {epoch} (restored by {entry.get('restored_by', 'a callback')})"
    elif source == "last" and entry.get("metrics"):
        text = f"last: the weights at the end of epoch {epoch}"
    elif source == "last":
        done = f"after epoch {epoch}" if epoch else "before the first epoch ended"
        text = f"last: the weights at step {step}, {done}"
    else:  # a callback that replaced the weights (SWA/EMA: ``{"source": "swa", "updates": 12, ...}``)
        updates = f", {entry['updates']} updates" if entry.get("updates") is not None else ""
        text = f"averaged ({source.upper()}{updates}): the averaged weights, not those of the last step"
    checkpoint = entry.get("checkpoint")
    return f"{text}, in {checkpoint}" if checkpoint else f"{text} (no checkpoint of the run holds them)"


_EXACT = "exact: epochal loaders are addressed by (seed, epoch, batch index), so a resumed run reads the same batches"


class RunLogger(Callback):
    """Record the run in ``learner.run_dir``: added automatically when the learner has a run folder.

    ``metrics.jsonl`` gets one line per epoch (rewritten from the restored history on resume, so a
    crashed and resumed run has exactly one line per epoch); ``summary.json`` is rewritten after
    every epoch with ``status: "running"`` and at the end with the final status: ``finished``,
    ``stopped`` (a callback cancelled the fit; ``stop_reason`` says which and why),
    ``interrupted`` (Ctrl-C or SIGTERM) or ``failed``. Its ``mid_epoch_resume`` entry says whether
    a resume in the middle of an epoch is exact for the training data, and lists the epochs that a
    resume had to restart (see :meth:`resume_statement`).

    Epochs are numbered from 1 everywhere (``epochs`` is the number of epochs run, ``final.epoch``
    and ``best.<key>.epoch`` the epoch whose values they are). The final summary also says which
    weights the run ends with, under ``final_weights``: ``{"source": "last", "epoch", "step",
    "checkpoint", "metrics", "description"}`` where ``source`` is ``last`` (the weights of the last
    step), ``best`` (EarlyStopping's ``restore_best_weights`` put an earlier epoch's weights back)
    or what a callback that replaces the weights says (its :meth:`~Callback.run_summary`: SWA and
    EMA name ``swa``/``ema``, with their ``valid_<source>/...`` metrics), and ``checkpoint`` is the
    file of the run that holds exactly those weights (None when none does).
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
        # loaders count epochs from 0 as the loop does; the summary numbers them as the screen does
        restarted = [{**r, "epoch": r["epoch"] + 1} for r in statement.get("restarted", [])]
        before = self._restarted_before
        return {**statement, "restarted": before + [r for r in restarted if r not in before]}

    def after_epoch(self) -> None:
        if not self.learner.history or self.learner.history[-1]["epoch"] != self.learner.state.epoch_number:
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
        last = learner.history[-1] if learner.history else {}
        final = {"epoch": last["epoch"], **{k: v for k, v in last.items() if "/" in k}} if last else {}
        summary = {
            "name": learner.run_dir.name,
            "status": self.status,
            "epochs": last.get("epoch", 0),
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
        if self.status == "stopped":
            summary["stop_reason"] = getattr(learner, "stop_reason", None)
        for callback in learner.callbacks:  # e.g. SWA's final_weights, SnapshotEnsemble's snapshots
            for key, value in callback.run_summary().items():
                merged = isinstance(value, dict) and isinstance(summary.get(key), dict)
                summary[key] = {**summary[key], **value} if merged else value
        if self.status != "running":
            summary["final_weights"] = self.final_weights(summary.pop("final_weights", None))
        write_json_atomic(learner.run_dir / "summary.json", summary)
        return summary

    def final_weights(self, declared: dict[str, Any] | None = None) -> dict[str, Any]:
        """Which weights the model holds at the end of the fit, and which checkpoint file holds them.

        Args:
            declared: what callbacks said under ``final_weights`` (default: the weights of the last step).
        """
        learner = self.learner
        last = learner.history[-1] if learner.history else {}
        entry = {"source": "last", "epoch": last.get("epoch"), "step": learner.state.step, **(declared or {})}
        if entry["source"] in ("last", "best"):
            record = next((r for r in learner.history if r.get("epoch") == entry["epoch"]), {})
            at_epoch_end = record.get("step") == entry["step"]
            entry["metrics"] = {k: v for k, v in record.items() if k.startswith("valid/")} if at_epoch_end else {}
        else:  # averaged weights (SWA/EMA) are validated as valid_<source>/... in the last record
            entry.setdefault("metrics", {k: v for k, v in last.items() if k.startswith(f"valid_{entry['source']}/")})
        if "checkpoint" not in entry:
            entry["checkpoint"] = self._checkpoint_at(entry["step"])
        entry.setdefault("description", _describe(entry, learner.state.step))
        return entry

    def _checkpoint_at(self, step: int | None) -> str | None:
        """The run's checkpoint (``last.pt``, else ``best.pt``) saved at optimizer step ``step``, if any."""
        run = self.learner.run_dir
        for name in ("last.pt", "best.pt"):
            position = checkpoint_position(run / "checkpoints" / name) if step is not None else None
            if position is not None and position["step"] == step:
                return f"checkpoints/{name}"
        return None

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

