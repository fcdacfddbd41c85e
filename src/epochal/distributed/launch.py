"""``epochal train --nproc N`` (or ``trainer.devices: N``): start torchrun for one machine.

The command re-runs itself under torchrun with the same arguments, one process per device:
``python -m torch.distributed.run --standalone --nproc_per_node=N -m epochal train ...``
(``--standalone``: a rendezvous on a free local port, so two jobs on one machine never collide).
A search whose trials train on several processes starts one such job per trial the same way
(:mod:`epochal.tuning.ddp_trial`). For several machines, call torchrun yourself on each
(docs/distributed.md).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

__all__ = ["relaunch", "torchrun_command"]


def torchrun_command(nproc: int, module_args: Sequence[str], module: str = "epochal") -> list[str]:
    """The torchrun command line that runs ``python -m <module> <module_args>`` in ``nproc`` processes here."""
    if nproc < 1:
        raise ValueError(f"the number of processes must be >= 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *module_args]


def relaunch(nproc: int, module_args: Sequence[str]) -> int:
    """Run ``epochal <module_args>`` under torchrun in ``nproc`` local processes; return torchrun's exit status."""
    return subprocess.call(torchrun_command(nproc, module_args))
