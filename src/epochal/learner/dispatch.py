"""Callbacks and events of a Learner: attaching, ordering and dispatching, mixed into :class:`~epochal.learner.Learner`.

Handlers are indexed once per change of the callback list (sorted by ``order``, ties in insertion
order), so firing an event in the hot loop is a dictionary lookup and a loop over bound methods.
Unknown event names are errors, and callbacks whose methods look like events but are not are
rejected when attached, so a typo can never silently do nothing.

In a data-parallel job, callbacks marked ``rank_zero_only`` (the run logger, CSV and TensorBoard
loggers, the progress bar) get no events on ranks other than 0: one process writes and prints.
"""

from __future__ import annotations

import contextlib

from epochal.callbacks.base import Callback, check_events
from epochal.events import EVENTS
from epochal.utils import unknown_name_error

__all__ = ["LearnerCallbacks"]


class LearnerCallbacks:
    """Attach, detach and run callbacks (mixed into :class:`~epochal.learner.Learner`)."""

    callbacks: list[Callback]

    def add_callback(self, callback: Callback) -> Callback:
        """Attach a callback (events are checked for typos) and return it."""
        if isinstance(callback, type):
            raise TypeError(f"add_callback takes a callback instance, got the class {callback.__name__}; "
                            f"write {callback.__name__}()")
        check_events(callback)
        callback.learner = self
        self.callbacks.append(callback)
        self._index_handlers()
        return callback

    def remove_callback(self, callback: Callback) -> None:
        """Detach a callback."""
        self.callbacks.remove(callback)
        self._index_handlers()

    @contextlib.contextmanager
    def added_callbacks(self, *callbacks: Callback):
        """Attach callbacks for the duration of a ``with`` block (removed also on error)."""
        for cb in callbacks:
            self.add_callback(cb)
        try:
            yield callbacks
        finally:
            for cb in callbacks:
                if cb in self.callbacks:
                    self.remove_callback(cb)

    @contextlib.contextmanager
    def removed_callbacks(self, *callbacks: Callback):
        """Detach callbacks for the duration of a ``with`` block (restored also on error)."""
        for cb in callbacks:
            self.remove_callback(cb)
        try:
            yield
        finally:
            for cb in callbacks:
                self.add_callback(cb)

    def get_callback(self, kind: type) -> Callback | None:
        """The first attached callback of a class, or None."""
        return next((cb for cb in self.callbacks if isinstance(cb, kind)), None)

    def _index_handlers(self) -> None:
        ordered = sorted(self.callbacks, key=lambda cb: cb.order)  # stable: ties keep insertion order
        strategy = getattr(self, "strategy", None)
        if strategy is not None and not strategy.is_main:
            ordered = [cb for cb in ordered if not getattr(cb, "rank_zero_only", False)]
        self._handlers = {e: tuple(getattr(cb, e) for cb in ordered if hasattr(cb, e)) for e in EVENTS}

    def __call__(self, event: str) -> None:
        """Run every callback that implements ``event``, in order."""
        try:
            handlers = self._handlers[event]
        except KeyError:
            raise unknown_name_error("event", event, EVENTS) from None
        for handler in handlers:
            handler()

    def show_training_loop(self) -> str:
        """Print (and return) which callbacks run at each event, in loop order."""
        lines = []
        for event in EVENTS:
            names = [type(h.__self__).__name__ for h in self._handlers[event]]
            lines.append(f"{event:<24}{', '.join(names) if names else '-'}")
        text = "\n".join(lines)
        print(text)
        return text
