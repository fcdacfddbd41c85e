"""SWA and snapshot ensembles under DDP on two CPU processes (gloo): one average, BatchNorm over every
rank's share, rank 0 alone writes the files."""

from __future__ import annotations

import averaging_worker
import torch
import torch.multiprocessing as mp

from epochal.averaging import recalibrate_bn
from epochal.state import load_checkpoint


def test_swa_under_ddp_averages_once_over_every_ranks_share_and_rank_zero_writes(tmp_path):
    run_dir = tmp_path / "run"
    mp.spawn(averaging_worker.run, args=(2, str(tmp_path / "rendezvous"), str(tmp_path), str(run_dir)),
             nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # DDP keeps the replicas identical, so the averages (and their recalibrated statistics) agree
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key
    assert ranks[0]["updates"] == ranks[1]["updates"] == averaging_worker.CYCLES - 1
    assert ranks[0]["history"][-1]["valid_swa/accuracy"] == ranks[1]["history"][-1]["valid_swa/accuracy"]
    snapshots = [f"snapshot_{k:02d}.pt" for k in range(averaging_worker.CYCLES)]
    assert ranks[0]["written"] == [*snapshots, "swa.pt"]
    assert ranks[1]["written"] == []
    assert ranks[0]["final"] == ranks[1]["final"] == "checkpoints/swa.pt"
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("snapshot_*.pt")) == snapshots

    # BatchNorm: what one process's cumulative pass over both ranks' shares gives the averaged weights
    saved = load_checkpoint(run_dir / "checkpoints" / "swa.pt")["model"]
    alone = averaging_worker.model()
    alone.load_state_dict(saved)
    union = [batch for r in range(2) for batch in averaging_worker.train_loader(r, 2).iter_epoch(0)]
    recalibrate_bn(alone, union)
    norm, final = alone[1], ranks[0]["weights"]
    torch.testing.assert_close(final["1.running_mean"], norm.running_mean)
    torch.testing.assert_close(final["1.running_var"], norm.running_var)
    assert int(final["1.num_batches_tracked"]) == len(union)
    # ... and not what rank 0's share alone gives
    own = averaging_worker.model()
    own.load_state_dict(saved)
    recalibrate_bn(own, averaging_worker.train_loader(0, 2))
    assert not torch.allclose(own[1].running_mean, norm.running_mean)
