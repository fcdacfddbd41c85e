"""Checkpoints of a Learner: one state object, saved atomically, restored exactly.

A checkpoint holds the model, the optimizer, the GradScaler, the loop position (epoch, batch
within the epoch, optimizer step, phase), every callback's state, the RNG states of all
generators, and the history. Loading it and calling ``fit`` with the same phases continues
mid-epoch as if nothing had happened: the data order and augmentation of a batch depend only on
(seed, epoch, batch index), and the schedule only on the optimizer-step count.

Under data-parallel training the checkpoint is rank 0's (the bare model's state, no ``module.``
prefix, so it loads into a single process), written by rank 0 alone; it adds every rank's RNG
states (``rng_ranks``) and the running loss of all ranks. Every rank takes part in a save (the
gather of those states), so every rank calls :meth:`~LearnerCheckpointing.save_checkpoint` at the
same point. A resume reads the file on rank 0 and sends its contents to the other ranks, which
need no access to it; each rank restores its own RNG states when the job has as many ranks as the
one that wrote it, and rank 0's otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from epochal.state import (
    CheckpointError,
    capture_rng,
    export_safetensors,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)

__all__ = ["LearnerCheckpointing", "resolve_checkpoint"]


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path:
    """A checkpoint file from a file path or a run folder (``<run>/checkpoints/<which>.pt``)."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / f"{which}.pt"
        if not candidate.is_file():
            raise CheckpointError(f"run folder {path} has no checkpoints/{which}.pt to resume from")
        return candidate
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


class LearnerCheckpointing:
    """Saving and loading the whole training state (mixed into :class:`~epochal.learner.Learner`)."""

    resolve_checkpoint = staticmethod(resolve_checkpoint)

    def _callback_keys(self) -> list[str]:
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            n = seen.get(cb.name, 0)
            seen[cb.name] = n + 1
            keys.append(cb.name if n == 0 else f"{cb.name}_{n}")
        return keys

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (tensors and plain data only).

        In a data-parallel job this is a collective: every rank must call it at the same point.
        """
        position = self.state.state_dict()
        if self._epoch_done:  # the epoch's training part is over: resume at the next epoch
            position.update(epoch=self.state.epoch + 1, batch=0)
        schedule = self.schedule
        rng = capture_rng()
        every_rng = self.strategy.gather_objects(rng)
        partial_sum, partial_count = self.strategy.combine_sum(self._loss_sum, self._loss_count)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scaler": self.scaler.state_dict(),
            "state": position,
            "schedule": {"total_steps": schedule.total_steps, "boundaries": list(schedule.boundaries)}
            if schedule is not None else None,
            "callbacks": {key: cb.state_dict() for key, cb in zip(self._callback_keys(), self.callbacks)},
            "rng": rng,
            "history": list(self.history),
            "epoch_loss": {"sum": (self._epoch_loss_sum + partial_sum).detach().clone(),
                           "count": self._epoch_loss_count + partial_count},
            "metric_directions": dict(self.metric_directions),
            "seed": self.seed,
        }
        if len(every_rng) > 1:
            state["rng_ranks"] = every_rng
        return state

    def save_checkpoint(self, path: str | Path) -> Path:
        """Atomically write the training state to ``path`` (in a job: every rank calls it, rank 0 writes)."""
        state = self.checkpoint_state()
        if not self.is_main:
            return Path(path)
        return save_checkpoint(path, state)

    def load_checkpoint(self, path: str | Path, weights_only: bool = False) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save_checkpoint`.

        Args:
            path: the checkpoint file.
            weights_only: restore only the model weights (for evaluation or fine-tuning).
        """
        # in a job rank 0 reads the file and the others receive it (on the CPU: it travels pickled)
        location = "cpu" if self.strategy.world.distributed else self.device
        payload = self.strategy.run_on_main(lambda: load_checkpoint(path, map_location=location))
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {str(exc)[:500]}") from exc
        if weights_only:
            return payload
        self._restore_loop(payload, path)
        return payload

    def _restore_loop(self, payload: dict[str, Any], path) -> None:
        saved = payload.get("schedule")
        current = list(self.schedule.boundaries) if self.schedule is not None else None
        if current is not None and saved is not None and list(saved["boundaries"]) != current:
            raise CheckpointError(
                f"checkpoint {path} was written for a schedule with phase boundaries {saved['boundaries']} "
                f"(in optimizer steps), but this fit has {current}; resume with the same "
                "phases, data and batch size"
            )
        self.state.load_state_dict(payload["state"])
        if self.schedule is not None:
            self._enter_phase(self.state.phase, fire=False)
        if payload.get("optimizer") is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        states = payload.get("callbacks", {})
        for key, cb in zip(self._callback_keys(), self.callbacks):
            if key in states:
                cb.load_state_dict(states[key])
        self.history = list(payload.get("history", []))
        if payload.get("version", 1) < 2:  # written when history records numbered epochs from 0
            self.history = [{**r, "epoch": r["epoch"] + 1} if "epoch" in r else r for r in self.history]
        self._resumed_loss = payload.get("epoch_loss")
        self.metric_directions.update(payload.get("metric_directions", {}))
        restore_rng(self._own_rng(payload))
        self._epoch_done = False

    def _own_rng(self, payload: dict[str, Any]) -> dict[str, Any]:
        """This rank's RNG states: its own when the job has as many ranks as the writer's, else rank 0's."""
        every = payload.get("rng_ranks")
        world = self.strategy.world
        if every is not None and len(every) == world.world_size:
            return every[world.rank]
        return payload["rng"]

    def export_weights(self, path: str | Path) -> Path:
        """Write the model weights to a safetensors file."""
        meta = {"format": "epochal", "model": type(self.model).__name__}
        return export_safetensors(self.model.state_dict(), path, metadata=meta)

    def load_weights(self, path: str | Path, strict: bool = True) -> None:
        """Load model weights from a safetensors file or an epochal checkpoint."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device=str(self.device))
        else:
            state = load_checkpoint(path, map_location=self.device)["model"]
        self.model.load_state_dict(state, strict=strict)

