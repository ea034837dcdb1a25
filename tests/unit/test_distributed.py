"""Data-parallel training (srgnn.distributed) against one process: two CPU ranks with gloo,
spawned here, must give the loss, the gradients and the trained model of one process on the
union of their batches."""
from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from srgnn import Trainer
from srgnn.distributed import DistributedTrainer, gather_rows, shard, shard_sizes
from srgnn.robustness.preparation import shift_setup
from srgnn.training.minibatch import MiniBatches
from tests.unit import distributed_ranks as ranks


def spawn(function, tmp_path, world_size: int = 2) -> list[dict]:
    mp.spawn(function, args=(world_size, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=world_size)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def test_shares_follow_the_remainder_rule_and_concatenate_to_the_batch():
    nodes = torch.arange(10, 17)
    assert shard_sizes(7, 3) == [3, 2, 2]
    assert [shard(nodes, r, 3).tolist() for r in range(3)] == [[10, 11, 12], [13, 14], [15, 16]]
    assert torch.equal(torch.cat([shard(nodes, r, 3) for r in range(3)]), nodes)


def test_outside_a_process_group_the_trainer_says_how_to_launch(cora, cora_published):
    with pytest.raises(RuntimeError, match="launch with torchrun"):
        DistributedTrainer(ranks.sr_gcn(ranks.Graph.from_data(cora), "cmd"), batch_size=64).fit(cora, cora_published[0])
    with pytest.raises(RuntimeError, match="launch with torchrun"):
        gather_rows(torch.zeros(2, 3), [2])


def test_what_needs_the_whole_batch_in_one_process_is_refused(cora):
    from srgnn import ShiftRobust
    from srgnn.models import APPNP, GCN

    with pytest.raises(ValueError, match="cannot train this ShiftRobust's max_pull"):
        DistributedTrainer(ShiftRobust(APPNP(cora.num_features, 7)), batch_size=64)  # max_pull "auto" is 1 for APPNP
    with pytest.raises(ValueError, match="conditional"):
        DistributedTrainer(ShiftRobust(GCN(cora.num_features, 7), conditional=True), batch_size=64)


def test_two_ranks_give_one_processs_loss_and_gradients_on_the_union_batch(tmp_path):
    found = spawn(ranks.one_step, tmp_path)
    graph, train = ranks.cora_and_set()
    for regularizer in ("cmd", "mmd"):
        robust = ranks.sr_gcn(graph, regularizer)
        robust.reset_parameters()
        setup = shift_setup(robust, graph, train, 0, None)
        batches = MiniBatches(robust, setup, graph, train, 0, torch.device("cpu"), batch_size=ranks.BATCH,
                              num_neighbors=ranks.FAN_OUTS)
        loss = sum(batches.step_loss().values())
        loss.backward()
        assert robust.has_penalty and float(loss.detach()) > 0
        for rank in found:
            torch.testing.assert_close(rank[regularizer]["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
            for name, param in robust.model.named_parameters():
                torch.testing.assert_close(rank[regularizer]["grads"][name], param.grad, rtol=1e-4, atol=1e-6,
                                           msg=lambda m: f"{regularizer} {name}: {m}")


def test_a_ddp_fit_is_the_single_process_fit_on_the_same_global_batches_and_resumes(tmp_path):
    found = spawn(ranks.fits, tmp_path)
    graph, train = ranks.cora_and_set()
    single = Trainer(ranks.sr_gcn(graph, "cmd"), epochs=4, batch_size=ranks.BATCH,
                     num_neighbors=ranks.FAN_OUTS).fit(graph, train)
    expected = single.logits(graph)
    for rank in found:
        torch.testing.assert_close(rank["logits"], expected, rtol=1e-4, atol=1e-5)
        assert rank["history"] == pytest.approx(single.history_, rel=1e-5)
        # two epochs, a checkpoint, then two more: the same run
        torch.testing.assert_close(rank["resumed_logits"], rank["logits"], rtol=1e-5, atol=1e-6)
        assert rank["resumed_history"] == pytest.approx(rank["history"], rel=1e-6)
        assert rank["disagree"].startswith("RanksDisagreeError") and "training sets" in rank["disagree"]
        assert "cannot be shared by 2 ranks" in rank["small_batch"]
        assert "is of another run" in rank["other_run"]
    assert not torch.allclose(expected, Trainer(ranks.sr_gcn(graph, "cmd"), epochs=1, batch_size=ranks.BATCH,
                                                num_neighbors=ranks.FAN_OUTS).fit(graph, train).logits(graph))
