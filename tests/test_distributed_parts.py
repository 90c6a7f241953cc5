"""The parts of a torchrun run, checked in two ranks without torchrun: this test process is
rank 0 and a forked copy of it rank 1, joined by a real Gloo process group. Each check compares
with what the two ranks' values say by plain arithmetic, or with one plain-torch step on the
whole batch. (tests/test_distributed.py runs whole jobs under torchrun.)"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import socket
import traceback
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.data.loader import derive_seed
from cnnlab.errors import ConfigError
from cnnlab.training.distributed import (
    Link,
    LostContact,
    ShardStep,
    StopVote,
    World,
    collective,
    is_collective_failure,
    process_device,
    process_group,
    seed_own_stream,
)

CPU = torch.device("cpu")


def _rank_one(fn, out: Path) -> None:
    """The forked rank 1: run `fn`, save what it returns (or the traceback), leave at once."""
    code = 0
    try:
        torch.set_num_threads(1)  # a forked torch must not touch the parent's thread pool
        with process_group(World(rank=1, size=2, launched=True), CPU, timeout_s=60) as world:
            torch.save(fn(world), out)
    except BaseException:
        out.with_suffix(".err").write_text(traceback.format_exc())
        code = 1
    os._exit(code)  # never run the parent's pytest clean-up in the copy


def two_ranks(fn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """(rank 0's result, rank 1's result) of fn(world), the ranks in one process group."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(probe.getsockname()[1]))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    out = tmp_path / "rank1.pt"
    child = multiprocessing.get_context("fork").Process(target=_rank_one, args=(fn, out))
    child.start()
    try:
        with process_group(World(rank=0, size=2, launched=True), CPU, timeout_s=60) as world:
            first = fn(world)
    finally:
        child.join(90)
        if child.is_alive():
            child.kill()
    error = out.with_suffix(".err")
    assert child.exitcode == 0, error.read_text() if error.exists() else child.exitcode
    return first, torch.load(out, weights_only=True)


# --- collectives: every rank gets the same answer, from both ranks' values ----------------------


def _reductions(world: World) -> dict:
    mine = torch.tensor([1.0, 5.0, -2.0]) if world.rank == 0 else torch.tensor([3.0, 2.0, -7.0])
    return {
        "sum": world.sum(mine.clone()),
        "smallest": world.smallest(mine.clone()),
        "largest": world.largest(4 if world.rank == 0 else 9),
        "largest_of_rank0": world.largest(6 if world.rank == 0 else 0),
        "text": world.rank0_text(f"runs/from-rank-{world.rank}", "run_dir"),
    }


def test_metrics_and_votes_are_reduced_over_both_ranks(tmp_path, monkeypatch):
    first, second = two_ranks(_reductions, tmp_path, monkeypatch)
    for got in (first, second):
        assert torch.equal(got["sum"], torch.tensor([4.0, 7.0, -9.0]))
        assert torch.equal(got["smallest"], torch.tensor([1.0, 2.0, -7.0]))
        assert got["largest"] == 9 and got["largest_of_rank0"] == 6
        assert got["text"] == "runs/from-rank-0"  # one run folder: rank 0's name


def _votes(world: World) -> list:
    """Rank 1 is signalled before step 1, and both ranks before step 3: rank 0 with SIGINT
    (2), rank 1 with SIGTERM (15), so the largest (15) is not their sum (17)."""
    vote = StopVote(world)
    signals = {
        1: [None, signal.SIGTERM, None, signal.SIGTERM],
        0: [None, None, None, signal.SIGINT],
    }
    return [vote(signum) for signum in signals[world.rank]] + [vote.result(), vote.result()]


def test_a_stop_signal_on_one_rank_stops_both_one_step_later(tmp_path, monkeypatch):
    """The vote is read a step after it is cast (it runs while the next step computes); the
    ranks agree on the largest signal."""
    first, second = two_ranks(_votes, tmp_path, monkeypatch)
    term = int(signal.SIGTERM)
    assert first == second == [None, None, term, None, term, None]


def test_a_launched_world_needs_its_process_group_for_a_collective():
    """process_group links the World it gives; a launched World without one says so in one
    line rather than failing deep inside torch.distributed."""
    with pytest.raises(RuntimeError) as info:
        World(rank=0, size=2, launched=True).linked()
    assert str(info.value) == "a collective of a launched World outside its process_group"
    link = Link(flags="group", store="store", prefix="cnnlab/1")
    assert World(rank=0, size=2, launched=True, link=link).linked() is link


def test_a_world_of_one_votes_alone_without_a_process_group():
    vote, world = StopVote(World()), World()
    assert [vote(None), vote(signal.SIGINT), vote.result()] == [None, signal.SIGINT, None]
    values = torch.tensor([2.0, -1.0])
    assert world.sum(values) is values and world.smallest(values) is values
    assert torch.equal(values, torch.tensor([2.0, -1.0]))
    assert world.largest(5) == 5 and world.rank0_text("mine", "key") == "mine"


# --- one training step on parts of a batch: the whole batch's gradient --------------------------

BATCH, CLASSES = 7, 3


def _batch() -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 1, 4, 4, generator=generator)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    torch.manual_seed(1)
    return images, labels, nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


class _Part:
    """The loader's side of a ShardStep: how many rows the whole batch had."""

    batch_total = BATCH


def _loss(class_weights: list[float] | None) -> nn.Module:
    weight = None if class_weights is None else torch.tensor(class_weights)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1 if weight is not None else 0.0)


def _sharded_step(rows: dict[int, slice], global_loss: bool, class_weights=None):
    def step(world: World) -> dict:
        images, labels, model = _batch()
        part = rows[world.rank]
        loss_fn = _loss(class_weights)
        shard = ShardStep(model, loss_fn, _Part(), CPU, global_loss=global_loss)
        logits, loss = shard.forward_backward(images[part], labels[part])
        shard.close()
        grads = [p.grad.clone() for p in model.parameters()]
        return {"grads": grads, "loss": loss.reshape(()), "logits": logits}

    return step


def _whole_batch(class_weights=None) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    images, labels, model = _batch()
    logits = model(images)
    loss = _loss(class_weights)(logits, labels)  # the (weighted) mean over all 7
    loss.backward()
    return [p.grad for p in model.parameters()], loss.detach(), logits.detach()


UNEVEN = {0: slice(0, 4), 1: slice(4, 7)}


@pytest.mark.parametrize(
    ("rows", "global_loss", "class_weights"),
    [
        (UNEVEN, False, None),  # parts of 4 and 3, weighted 4/7 and 3/7
        (UNEVEN, True, None),  # LBFGS: every rank sees the batch's loss
        ({0: slice(0, 7), 1: slice(7, 7)}, True, None),  # rank 1's part is empty; it still joins
        # each part weighted by its share of the batch's summed class weights
        (UNEVEN, False, [1.0, 3.0, 9.0]),
        (UNEVEN, True, [1.0, 3.0, 9.0]),
    ],
    ids=["uneven", "uneven-global-loss", "empty-part", "class-weights", "class-weights-global"],
)
def test_parts_of_a_batch_step_with_the_whole_batchs_gradient(
    rows, global_loss, class_weights, tmp_path, monkeypatch
):
    step = _sharded_step(rows, global_loss, class_weights)
    first, second = two_ranks(step, tmp_path, monkeypatch)
    grads, loss, logits = _whole_batch(class_weights)
    for rank, got in enumerate((first, second)):
        for mine, whole in zip(got["grads"], grads, strict=True):
            torch.testing.assert_close(mine, whole, rtol=0, atol=1e-6)
        torch.testing.assert_close(got["logits"], logits[rows[rank]], rtol=0, atol=1e-6)
    if global_loss:
        assert first["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
        assert second["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
    else:  # each rank's own part's mean loss (what its progress line shows)
        images, labels, model = _batch()
        for rank, got in enumerate((first, second)):
            own = _loss(class_weights)(model(images[rows[rank]]), labels[rows[rank]])
            assert got["loss"].item() == pytest.approx(own.item(), rel=1e-6)


def _refrozen_step(world: World) -> list:
    """Freeze the first layer after the DDP wrap, as --unfreeze-epoch's reverse would."""
    images, labels, model = _batch()
    shard = ShardStep(model, nn.CrossEntropyLoss(), _Part(), CPU)
    first_wrap = shard.ddp
    shard.follow_requires_grad()
    assert shard.ddp is first_wrap  # nothing changed: the same wrap
    model[1].requires_grad_(False)
    shard.follow_requires_grad()
    assert shard.ddp is not first_wrap
    part = slice(0, 4) if world.rank == 0 else slice(4, 7)
    shard.forward_backward(images[part], labels[part])
    return [p.grad for p in model.parameters()]


def test_a_changed_set_of_trainable_parameters_rewraps_the_model(tmp_path, monkeypatch):
    """DDP reduces the gradients of what was trainable when it was built: a freeze rewraps."""
    first, second = two_ranks(_refrozen_step, tmp_path, monkeypatch)
    images, labels, model = _batch()
    model[1].requires_grad_(False)
    nn.functional.cross_entropy(model(images), labels).backward()
    for got in (first, second):
        assert got[0] is None and got[1] is None  # the frozen layer has no gradient
        for mine, whole in zip(got[2:], [p.grad for p in model.parameters()][2:], strict=True):
            torch.testing.assert_close(mine, whole, rtol=0, atol=1e-6)


# --- the parts that need no process group ------------------------------------------------------


def test_ranks_after_the_first_draw_dropout_masks_from_streams_of_their_own():
    torch.manual_seed(123)
    seed_own_stream(World(rank=0, size=2, launched=True), seed=5, step=3)
    rank0 = torch.rand(4)
    torch.manual_seed(123)
    assert torch.equal(rank0, torch.rand(4))  # rank 0 keeps the stream checkpoints save
    seed_own_stream(World(rank=1, size=2, launched=True), seed=5, step=3)
    rank1 = torch.rand(4)
    torch.manual_seed(derive_seed(5, 3, 1))
    assert torch.equal(rank1, torch.rand(4))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, World()),
        ({"RANK": "1"}, World()),  # half a launcher's variables: a plain run
        ({"WORLD_SIZE": "2"}, World()),
        ({"RANK": "1", "WORLD_SIZE": "2"}, World(1, 2, 0, 1, True)),
        (
            {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"},
            World(5, 8, 1, 4, True),
        ),
    ],
)
def test_world_reads_every_launcher_variable(env, expected):
    assert World.from_env(env) == expected


WHOLE_NUMBERS = re.escape(
    "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; start several processes with "
    "torchrun, e.g. `torchrun --nproc_per_node=2 -m cnnlab train`"
)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "a"}, f"^{WHOLE_NUMBERS}$"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "a"}, f"^{WHOLE_NUMBERS}$"),
        ({"RANK": "-1", "WORLD_SIZE": "2"}, r"RANK -1 is not in 0\.\.WORLD_SIZE-1 \(2\)"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK 2 is not in"),
    ],
)
def test_launcher_variables_that_make_no_world_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        World.from_env(env)


def test_world_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert World.from_env() == World(rank=1, size=3, launched=True)


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    """No GPU is needed to pick one: only to use it."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = type("Cfg", (), {"sync_bn": False, "device": "cuda"})()
    second = World(rank=3, size=4, local_rank=1, local_size=2, launched=True)
    assert process_device(torch.device("cuda"), cfg, second) == torch.device("cuda", 1)
    alone = World(rank=0, size=2, local_rank=0, local_size=1, launched=True)  # one per machine
    assert process_device(torch.device("cuda", 1), cfg, alone) == torch.device("cuda", 1)
    plain = torch.device("cuda", 1)
    assert process_device(plain, cfg, World()) is plain  # a plain run keeps what it asked for
    cfg.device = "cuda:1"
    with pytest.raises(ConfigError, match=r"GPU of its local rank; give --device cuda .*cuda:1"):
        process_device(torch.device("cuda", 1), cfg, second)
    cfg.sync_bn, cfg.device = True, "cuda"  # SyncBatchNorm's GPUs: taken, not refused
    assert process_device(torch.device("cuda"), cfg, second) == torch.device("cuda", 1)
    cfg.sync_bn = False
    crowded = World(rank=0, size=3, local_rank=0, local_size=3, launched=True)
    with pytest.raises(ConfigError, match=r"started 3 processes .* has 2 GPU.*nproc_per_node=2"):
        process_device(torch.device("cuda"), cfg, crowded)
    with pytest.raises(ConfigError, match="not mps; use --device cpu"):
        process_device(torch.device("mps"), cfg, second)


@pytest.mark.parametrize(
    "message",
    ["Gloo all-reduce failed", "NCCL error", "Connection reset by peer", "operation timed out",
     "Socket Timeout"],
)  # fmt: skip
def test_each_word_of_a_collective_failure_is_recognised_alone(message):
    assert is_collective_failure(RuntimeError(message))


def test_a_lost_collective_says_which_rank_was_doing_what_and_why(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(LostContact) as caught, collective("training a step"):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection reset")
    text = str(caught.value)
    assert text.startswith("rank 3 lost contact with the other processes while training a step")
    assert "(Connection reset)" in text and "pair.cc" not in text  # C++ source paths dropped
    assert caught.value.exit_code == 1
    with pytest.raises(LostContact, match=r"^rank 7 lost contact"), collective("x", rank=7):
        raise torch.distributed.DistError("gone")
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2"), collective("training a step"):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")  # the model's own


class _Gone:
    """A process group whose peer has died: every call on it raises what Gloo raises then."""

    def __init__(self, *args, **kwargs):
        raise torch.distributed.DistError("peer gone")

    @staticmethod
    def fail(*args, **kwargs):
        raise torch.distributed.DistError("peer gone")

    get = set = wait = fail  # the rendezvous store's calls, and a vote's pending wait


class _WrapThenLose(nn.Module):
    """DistributedDataParallel that wraps, then loses its peer in the step."""

    def __init__(self, model, device_ids=None):
        super().__init__()

    def register_comm_hook(self, state, hook):
        pass

    def forward(self, images):
        raise torch.distributed.DistError("peer gone")


def _lost_vote(world: World) -> None:
    vote = StopVote(world)
    vote.pending = (_Gone, torch.tensor([0]))  # its wait() fails
    vote.result()


def _lost_wrap(monkeypatch) -> None:
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", _Gone)
    ShardStep(_batch()[2], nn.CrossEntropyLoss(), _Part(), CPU)


def _lost_step(monkeypatch) -> None:
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", _WrapThenLose)
    images, labels, model = _batch()
    ShardStep(model, nn.CrossEntropyLoss(), _Part(), CPU).forward_backward(images, labels)


LOST = World(rank=1, size=2, launched=True, link=Link(flags=None, store=_Gone, prefix="p"))


@pytest.mark.parametrize(
    "lose, doing",
    [
        (lambda mp: LOST.sum(torch.ones(2)), "summing metrics"),
        (lambda mp: LOST.smallest(torch.ones(2)), "comparing metrics"),
        (lambda mp: LOST.largest(3), "agreeing to stop"),
        (lambda mp: LOST.rank0_text("runs/x", "run_dir"), "sharing the run folder"),
        (lambda mp: StopVote(LOST)(None), "agreeing to stop"),
        (lambda mp: _lost_vote(LOST), "agreeing to stop"),
        (_lost_wrap, "wrapping the model in DistributedDataParallel"),
        (_lost_step, "training a step"),
    ],
    ids=["sum", "smallest", "largest", "run-folder", "vote", "vote-result", "wrap", "step"],
)  # fmt: skip
def test_each_collective_says_what_the_rank_was_doing_when_contact_was_lost(
    lose, doing, monkeypatch
):
    """Whichever collective a dead peer breaks, the one line names what the run was doing,
    so a user can tell a crash at start-up from one mid-step or at a stop."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(torch.distributed, "all_reduce", _Gone.fail)
    with pytest.raises(LostContact) as caught:
        lose(monkeypatch)
    assert str(caught.value).startswith(
        f"rank 1 lost contact with the other processes while {doing} (peer gone);"
    )
