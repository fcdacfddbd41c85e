"""The collectives on two CPU processes (gloo): uneven gathers, rank 0's decisions and errors, BatchNorm averaging."""

from __future__ import annotations

import ops_worker
import torch
import torch.multiprocessing as mp

from epochal.distributed import ops


def test_collectives_on_two_ranks(tmp_path):
    mp.spawn(ops_worker.run, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    expected = torch.arange(6, dtype=torch.float32).reshape(3, 2)  # rank 0's 3 rows; rank 1 had none
    for result in ranks:
        assert torch.equal(result["gathered"], expected)
        assert result["decision"] is True and result["shared"] == {"path": "written by 0"}
        assert result["error"] == "no such run folder"
        assert float(result["total"]) == 1.5 + 3.0 and result["count"] == 21
    # every rank holds what one process's cumulative pass over all 3 batches holds
    alone = ops_worker._norm_after(ranks[0]["batches"] + ranks[1]["batches"])
    for result in ranks:
        torch.testing.assert_close(result["mean"], alone.running_mean)
        torch.testing.assert_close(result["var"], alone.running_var)
        assert int(result["tracked"]) == 3


def test_collectives_of_a_single_process_are_identities():
    tensor = torch.ones(3)
    assert ops.all_reduce_sum(tensor) is tensor and ops.all_gather_uneven(tensor) is tensor
    assert ops.gather_objects(5) == [5] and ops.broadcast_object("x") == "x" and ops.agree(True)
    assert ops.run_on_main(lambda: 7) == 7 and ops.is_main()
    assert ops.average_batchnorm_statistics(torch.nn.BatchNorm1d(2)) == 0
