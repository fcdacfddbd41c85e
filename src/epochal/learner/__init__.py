"""The Learner: one training loop, its callbacks, its checkpoints and its tuning tools.

One concept, one file per part:

- :mod:`~epochal.learner.loop`: :class:`Learner`, the fit / epoch / batch levels of the loop,
  validation and prediction;
- :mod:`~epochal.learner.dispatch`: attaching callbacks and firing events;
- :mod:`~epochal.learner.checkpointing`: the one checkpoint state, saved atomically and restored exactly;
- :mod:`~epochal.learner.tuning`: the learning-rate finder, freezing and ``fine_tune``.
"""

from epochal.learner.checkpointing import resolve_checkpoint
from epochal.learner.loop import Learner
from epochal.learner.tuning import LRFinderResult

__all__ = ["LRFinderResult", "Learner", "resolve_checkpoint"]
