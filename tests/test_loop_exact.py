"""The training loop's and checkpoint's numbers, each checked against plain torch or plain
arithmetic written here: evaluate() on an uneven last batch, an epoch's sums across a
mid-epoch checkpoint and across processes, the first diverged step, the epoch's timing, and
what a checkpoint keeps, refuses and restores.

Processes under torchrun are stood in for by `all_reduced`: the peers run first and record
what they hand to each collective, then rank 0 runs with every collective reduced over all of
them, element by element, as torch.distributed.all_reduce does.
"""

from __future__ import annotations

import copy
import pickle
import random
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.training import checkpoint as ckpt
from cnnlab.training import loop
from cnnlab.training.cpu_split import SplitStep
from cnnlab.training.distributed import World
from cnnlab.training.loop import EpochSums, TrainingDiverged, evaluate, train_one_epoch

OLD = Path(__file__).parent / "data" / "checkpoint-v1-mnist_cnn.pt"
CPU = torch.device("cpu")
CLASSES = 5  # the data below never holds class 4: its per-class accuracy is NaN


def tiny_model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(12, CLASSES))


def batches(sizes: list[int], seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random (B, 3, 2, 2) images and labels in 0..3, one batch per size."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 3, 2, 2, generator=g), torch.randint(0, 4, (n,), generator=g))
        for n in sizes
    ]


def joined(data: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])


class Recorder:
    """A peer process: its collectives change nothing here, and their inputs are kept."""

    launched = True

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        self.inputs.append(values.clone())
        return values

    smallest = sum


class Reduced:
    """Rank 0: each collective gives the element-wise sum (or min) of every process's input."""

    launched = True

    def __init__(self, peers: list[Recorder]) -> None:
        self.peers, self.calls = peers, 0

    def _reduce(self, values: torch.Tensor, op) -> torch.Tensor:
        for peer in self.peers:
            values.copy_(op(values, peer.inputs[self.calls]))
        self.calls += 1
        return values

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return self._reduce(values, torch.add)

    def smallest(self, values: torch.Tensor) -> torch.Tensor:
        return self._reduce(values, torch.minimum)


def all_reduced(call, per_rank: list):
    """`call(world, x)` as rank 0 of len(per_rank) processes, rank r holding per_rank[r]."""
    peers = [Recorder() for _ in per_rank[1:]]
    for peer, x in zip(peers, per_rank[1:], strict=True):
        call(peer, x)
    reduced = Reduced(peers)
    result = call(reduced, per_rank[0])
    assert reduced.calls == len(peers[0].inputs)  # every process made the same collectives
    return result


def sums_of(loss_sum: float, correct: int, seen: int, bad: int = -1, step: int = 0) -> EpochSums:
    """EpochSums holding the given values, as a process's device would."""
    t = torch.tensor
    return EpochSums(
        t(loss_sum, dtype=torch.float32), t(correct), t(bad), t(step), seen=seen, seconds=3.0
    )


# --- evaluate() -----------------------------------------------------------------------------


def plain_evaluation(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """Mean loss, accuracy and per-class counts over every example, in plain torch."""
    model.eval()
    with torch.no_grad():
        logits = model(images)
    loss = F.cross_entropy(logits.double(), labels, reduction="sum").item() / len(labels)
    hit = logits.argmax(1) == labels
    correct = [int((hit & (labels == k)).sum()) for k in range(CLASSES)]
    total = [int((labels == k).sum()) for k in range(CLASSES)]
    return loss, int(hit.sum()) / len(labels), correct, total


def test_evaluate_matches_plain_torch_over_every_example_with_an_uneven_last_batch():
    """Loss and accuracy are means over examples (the last batch of 7 counts 7/23, not 1/3),
    per-class counts are exact ints, dropout is off, and an absent class reads NaN."""
    data = batches([8, 8, 0, 7])  # an empty part, as a process gets of a small last batch
    images, labels = joined(data)
    model = tiny_model(dropout=0.5).train()  # evaluate must switch dropout off
    result = evaluate(model, data, nn.CrossEntropyLoss(), CLASSES)
    loss, accuracy, correct, total = plain_evaluation(copy.deepcopy(model), images, labels)
    assert result.loss == pytest.approx(loss, rel=1e-6)
    assert result.accuracy == accuracy
    assert result.per_class_correct == correct and result.per_class_total == total
    assert all(type(n) is int for n in [*result.per_class_correct, *result.per_class_total])
    assert total[4] == 0 and sum(total) == 23
    expected = [c / t for c, t in zip(correct[:4], total[:4], strict=True)]
    assert result.per_class_accuracy[:4] == expected
    assert np.isnan(result.per_class_accuracy[4])
    # the check has teeth: the mean of the batch means is off by more than the tolerance
    per_batch = [F.cross_entropy(model(x), y).item() for x, y in data if len(y)]
    assert sum(per_batch) / 3 != pytest.approx(loss, rel=1e-4)


def test_evaluate_with_tta_scores_the_mean_logits_of_each_image_and_its_mirror():
    data = batches([8, 8, 7])
    images, labels = joined(data)
    model = tiny_model()
    result = evaluate(model, data, nn.CrossEntropyLoss(), CLASSES, tta=True)
    with torch.no_grad():
        logits = (model(images) + model(images.flip(3))) / 2
    loss = F.cross_entropy(logits.double(), labels).item()
    assert result.loss == pytest.approx(loss, rel=1e-6)
    assert result.accuracy == int((logits.argmax(1) == labels).sum()) / len(labels)
    plain = evaluate(model, data, nn.CrossEntropyLoss(), CLASSES)
    assert plain.loss != pytest.approx(result.loss, rel=1e-4)  # the mirror changed the score


def test_evaluate_over_two_processes_sums_their_parts_of_every_batch():
    """Each process evaluates its part of each batch (one part of the last is empty); the
    result is plain torch's over all of them."""
    data = batches([8, 8, 7])
    parts = [[(x[:4], y[:4]) for x, y in data], [(x[4:], y[4:]) for x, y in data]]
    parts[0][-1], parts[1][-1] = data[-1], (data[-1][0][:0], data[-1][1][:0])
    model = tiny_model()
    result = all_reduced(
        lambda world, part: evaluate(model, part, nn.CrossEntropyLoss(), CLASSES, world=world),
        parts,
    )
    loss, accuracy, correct, total = plain_evaluation(model, *joined(data))
    assert result.loss == pytest.approx(loss, rel=1e-6)
    assert (result.accuracy, result.per_class_correct, result.per_class_total) == (
        accuracy,
        correct,
        total,
    )
    assert all(type(n) is int for n in [*result.per_class_correct, *result.per_class_total])


@pytest.mark.parametrize("data", [[], batches([0, 0])], ids=["no batches", "empty batches"])
def test_evaluate_refuses_an_empty_split_in_one_line(data):
    """No examples is a user's data set without test images, not a division by zero."""
    with pytest.raises(CnnlabError, match=r"^the evaluation split is empty; give a data set"):
        evaluate(tiny_model(), data, nn.CrossEntropyLoss(), CLASSES)


def test_evaluation_sums_live_on_the_batches_device():
    """Sums made where the labels are (the meta device stands in for a GPU), so the loop
    never copies to the host per batch; the counts are int64 and one per class."""
    zeros = loop.EvalSums.zeros(CLASSES, torch.device("meta"))
    loss_sum, correct, total = zeros.loss_sum, zeros.correct, zeros.total
    assert [t.device.type for t in (loss_sum, correct, total)] == ["meta"] * 3
    assert (loss_sum.shape, loss_sum.dtype) == (torch.Size([]), torch.float32)
    assert correct.shape == total.shape == (CLASSES,)
    assert correct.dtype == total.dtype == torch.int64
    assert correct is not total


# --- an epoch's sums: plain torch, mid-epoch checkpoint, processes ----------------------------


def plain_epoch(model: nn.Module, data, lr: float = 0.1) -> tuple[float, int, int]:
    """(loss sum, correct, seen) of SGD with momentum over `data`, driven by hand."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_sum = correct = 0
    for x, y in data:
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum, correct, sum(len(y) for _, y in data)


def test_epoch_sums_survive_a_mid_epoch_checkpoint_exactly(tmp_path):
    """Sums saved after 3 of 5 batches, written and read back as a checkpoint (weights_only)
    and loaded into fresh ones, end the epoch where an uninterrupted epoch ends, bit for bit,
    and where plain torch ends; the saved seconds carry over."""
    data, model = batches([8, 8, 8, 8, 5]), tiny_model()

    def start():
        m = copy.deepcopy(model)
        return m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss()

    straight = EpochSums.zeros(CPU, 0)
    m, optimizer, loss_fn = start()
    train_one_epoch(m, data, optimizer, loss_fn, straight)

    m, optimizer, loss_fn = start()
    before = EpochSums.zeros(CPU, 0)
    train_one_epoch(m, data[:3], optimizer, loss_fn, before)
    before.seconds = 1234.5
    saved = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "sums": before.state_dict(World())}
    ckpt.save_checkpoint(saved, tmp_path / "mid.pt")
    after = EpochSums.zeros(CPU, 3)
    after.load_state_dict(ckpt.load_checkpoint(tmp_path / "mid.pt")["sums"])
    assert (after.seen, after.seconds) == (24, 1234.5)
    train_one_epoch(m, data[3:], optimizer, loss_fn, after)

    got = after.totals(World())
    assert got == straight.totals(World())  # bit for bit, first_bad_step -1 included
    loss_sum, correct, seen = plain_epoch(model, data)
    assert (got.correct, got.seen, got.first_bad_step) == (correct, seen, -1)
    assert got.loss_sum == pytest.approx(loss_sum, rel=1e-6)
    assert after.seconds > 1234.5


BIG = 2**24 + 1  # the first whole number float32 cannot hold: a count must not pass through it


@pytest.mark.parametrize(
    ("bad", "first_bad"),
    [((-1, -1), -1), ((0, -1), 0), ((-1, 4), 4), ((7, 3), 3)],
    ids=["none", "step 0 on rank 0", "on rank 1 only", "earliest of both"],
)
def test_epoch_totals_over_two_processes_are_the_sums_and_the_earliest_bad_step(bad, first_bad):
    """Loss, correct and seen add up exactly (counts past float32's range included); the
    first bad step is the earliest of any process, step 0 counting, and -1 when none."""
    ranks = [sums_of(1.5, BIG, BIG, bad[0]), sums_of(2.25, 4, 7, bad[1])]
    totals = all_reduced(lambda world, sums: sums.totals(world), ranks)
    assert (totals.loss_sum, totals.correct, totals.seen) == (3.75, BIG + 4, BIG + 7)
    assert type(totals.correct) is int and type(totals.seen) is int
    assert totals.first_bad_step == first_bad
    alone = sums_of(1.5, BIG, BIG, bad[0]).totals(World())
    assert (alone.loss_sum, alone.correct, alone.seen) == (1.5, BIG, BIG)
    assert alone.first_bad_step == bad[0]


def test_two_processes_save_the_sums_of_both_and_one_process_resumes_them(tmp_path):
    """A checkpoint of a part-done epoch under torchrun holds every process's sums, so the run
    resumed by one process reports the whole epoch."""
    ranks = [sums_of(1.5, 3, 10), sums_of(2.25, 4, 7)]
    saved = all_reduced(lambda world, sums: sums.state_dict(world), ranks)
    assert saved["loss_sum"].dtype == torch.float32 and saved["correct"].dtype == torch.int64
    resumed = EpochSums.zeros(CPU, 0)
    resumed.load_state_dict(saved)
    totals = resumed.totals(World())
    assert (totals.loss_sum, totals.correct, totals.seen) == (3.75, 7, 17)
    assert resumed.seconds == 3.0


def test_epoch_sums_start_at_zero_on_the_device_with_the_global_step():
    """Fresh sums are made on the training device (meta stands in for a GPU), and count
    steps from the run's global step."""
    sums = EpochSums.zeros(torch.device("meta"), 41)
    fields = (sums.loss_sum, sums.correct, sums.first_bad_step, sums.step_counter)
    assert [t.device.type for t in fields] == ["meta"] * 4
    assert [t.dtype for t in fields] == [torch.float32, *[torch.int64] * 3]
    cpu = EpochSums.zeros(CPU, 41)
    assert (float(cpu.loss_sum), int(cpu.correct), int(cpu.first_bad_step)) == (0.0, 0, -1)
    assert (int(cpu.step_counter), cpu.seen, cpu.seconds) == (41, 0, 0.0)


# --- divergence: the first bad step ------------------------------------------------------------


class BadAt(nn.CrossEntropyLoss):
    """Cross-entropy whose value is `value` (NaN or Inf) on the given calls (0-based)."""

    def __init__(self, calls: set[int], value: float) -> None:
        super().__init__()
        self.bad, self.value, self.calls = calls, value, 0

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().forward(logits, labels)
        self.calls += 1
        return loss * self.value if self.calls - 1 in self.bad else loss


@pytest.mark.parametrize(
    ("bad", "value", "start", "epoch", "message"),
    [
        ({2, 4}, float("nan"), 10, 1, "at step 13 (epoch 2)"),
        ({0}, float("inf"), 0, 0, "at step 1 (epoch 1)"),
        ({5}, float("-inf"), 30, 6, "at step 36 (epoch 7)"),
    ],
    ids=["nan mid-epoch", "inf at the first step of the run", "-inf at the last batch"],
)
def test_the_first_diverged_step_is_reported_with_its_global_step_and_epoch(
    tmp_path, bad, value, start, epoch, message
):
    """The step in the message is the run's 1-based step of the first NaN/Inf loss (not a
    later one, and not the batch's place in the epoch), with the 1-based epoch."""
    model = tiny_model()
    sums = EpochSums.zeros(CPU, start)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, batches([4] * 6), optimizer, BadAt(bad, value), sums)
    totals = sums.totals(World())
    assert totals.first_bad_step == start + min(bad)
    with pytest.raises(TrainingDiverged) as info:
        loop.raise_if_diverged(totals.first_bad_step, epoch, tmp_path)
    assert str(info.value) == (
        f"the loss became NaN or Inf {message}; the learning rate is likely too high. "
        f"The last good checkpoint in {tmp_path} is kept"
    )


def test_a_finite_epoch_reports_no_bad_step_and_does_not_raise(tmp_path):
    """-1 means none: an epoch without NaN/Inf goes on."""
    sums = EpochSums.zeros(CPU, 7)
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, batches([4] * 3), optimizer, nn.CrossEntropyLoss(), sums)
    assert sums.totals(World()).first_bad_step == -1
    loop.raise_if_diverged(-1, 0, tmp_path)


# --- the epoch's seconds -------------------------------------------------------------------------


class Clock:
    """A perf_counter that moves only when the test says (loading, training, the hook)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.parametrize("hook", [True, False], ids=["on_step", "no hook"])
def test_epoch_seconds_count_loading_and_training_but_not_the_step_hook(monkeypatch, hook):
    """sums.seconds adds (to a resumed epoch's seconds) the time spent loading batches and
    training on them; the time of on_step's saves is left out."""
    clock = Clock()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))

    def loader():
        for batch in batches([4, 4, 3]):
            clock.now += 1.0  # loading a batch
            yield batch
        clock.now += 0.5  # the loader's end of epoch

    def on_step(batches):
        clock.now += 100.0  # a checkpoint save

    model = tiny_model()
    model.register_forward_hook(lambda *_: setattr(clock, "now", clock.now + 2.0))  # training
    sums = EpochSums.zeros(CPU, 0)
    sums.seconds = 5.0  # the part of the epoch before a resume
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(
        model, loader(), optimizer, nn.CrossEntropyLoss(), sums, on_step=on_step if hook else None
    )
    assert sums.seconds == 5.0 + 3 * (1.0 + 2.0) + 0.5


# --- what reaches the forward: autocast, slices, LBFGS --------------------------------------------

OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1),
    "lbfgs": lambda params: torch.optim.LBFGS(params, max_iter=3),
}


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_autocast_reaches_every_forward_of_the_step(optimizer):
    """The autocast context wraps the model's forward, in the closure LBFGS calls too."""
    model = tiny_model()
    dtypes: list[torch.dtype] = []
    model.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    sums = EpochSums.zeros(CPU, 0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    train_one_epoch(
        model, batches([6]), OPTIMIZERS[optimizer](model.parameters()), nn.CrossEntropyLoss(), sums,
        autocast=autocast,
    )  # fmt: skip
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert sums.seen == 6


class SizeRecordingLoss(nn.CrossEntropyLoss):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(labels))
        return super().forward(logits, labels)


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_a_split_step_evaluates_every_loss_of_the_step_in_slices(optimizer):
    """With --cpu-slices, the step (and each of LBFGS's re-evaluations) runs on slices of 4
    and 3, never on the whole batch of 7; the epoch's loss is the whole batch's."""
    model = tiny_model()
    reference = copy.deepcopy(model)
    loss_fn = SizeRecordingLoss()
    split = SplitStep(model, loss_fn, 2)
    sums = EpochSums.zeros(CPU, 0)
    ((images, labels),) = data = batches([7])
    try:
        train_one_epoch(
            model, data, OPTIMIZERS[optimizer](model.parameters()), loss_fn, sums, split=split
        )
    finally:
        split.close()
    assert sorted(loss_fn.sizes[:2]) == [3, 4]  # one evaluation: two slices
    assert sorted(set(loss_fn.sizes)) == [3, 4] and len(loss_fn.sizes) % 2 == 0
    if optimizer == "lbfgs":
        assert len(loss_fn.sizes) > 2  # LBFGS re-evaluated the batch, in slices each time
    with torch.no_grad():
        expected = F.cross_entropy(reference(images), labels).item() * 7
    assert float(sums.loss_sum) == pytest.approx(expected, rel=1e-5)


# --- checkpoints: what is refused, and how it says why -----------------------------------------


class RunsCode:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_even_when_the_environment_turns_safe_loading_off(
    tmp_path, monkeypatch
):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only changes torch.load's default: load_checkpoint
    asks for weights_only itself, so the file's code never runs; the refusal names what torch
    refused, without torch's advice to load the file unsafely or its terminal escape codes."""
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "version": 1, "payload": RunsCode(marker)}, path)
    with pytest.raises(pickle.UnpicklingError) as torch_says:
        torch.load(path, weights_only=True)
    said = str(torch_says.value)
    assert "\x1b[" in said and "can still be loaded" in said  # what must not reach the user
    refused = said.split("WeightsUnpickler error: ")[1].split(" was not an allowed")[0]
    assert refused == "Unsupported global: GLOBAL getattr"  # how the pickle reaches Path.touch
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert not marker.exists()
    assert str(info.value) == (
        f"refused to load {path}: it holds objects other than tensors and plain values "
        f"({refused}); only load checkpoints you trust, saved by cnnlab"
    )
    # a refusal in other words: its first line, without escape codes, cut to 120 characters
    other = pickle.UnpicklingError("\x1b[1mbad\x1b[0m " + "word " * 40 + "\nsecond line")
    assert ckpt.refusal(other) == "bad " + " ".join(["word"] * 23) + "…"


def raising(err: BaseException):
    def load(*args, **kwargs):
        raise err

    return load


def test_an_unsafe_pickle_error_without_text_still_says_why(tmp_path, monkeypatch):
    """An UnpicklingError with no message reads 'unsafe content', not an empty ()."""
    path = tmp_path / "x.pt"
    path.write_bytes(b"anything")
    monkeypatch.setattr(torch, "load", raising(pickle.UnpicklingError()))
    with pytest.raises(CheckpointError, match=r"plain values \(unsafe content\); only load"):
        ckpt.load_checkpoint(path)


def test_an_unreadable_file_names_the_first_line_of_torchs_error_cut_to_100(tmp_path, monkeypatch):
    """A torn or foreign file: one line, with the start of what torch said."""
    path = tmp_path / "torn.pt"
    path.write_bytes(b"anything")
    monkeypatch.setattr(torch, "load", raising(RuntimeError("x" * 150 + "\nsecond line")))
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(info.value) == (
        f"{path} is not a readable checkpoint (truncated or corrupt: {'x' * 99}…)"
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ([1, 2], "is not a cnnlab checkpoint (no 'cnnlab-checkpoint' marker)"),
        ({"version": 1}, "is not a cnnlab checkpoint (no 'cnnlab-checkpoint' marker)"),
        ({"format": "cnnlab-checkpoint"}, "has no valid checkpoint version (None); it is damaged"),
        ({"format": "cnnlab-checkpoint", "version": 0}, "has no valid checkpoint version (0)"),
        ({"format": "cnnlab-checkpoint", "version": "1"}, "has no valid checkpoint version ('1')"),
        ({"format": "cnnlab-checkpoint", "version": 1.0}, "has no valid checkpoint version (1.0)"),
        (
            {"format": "cnnlab-checkpoint", "version": ckpt.VERSION + 1},
            f"was written by a newer cnnlab (checkpoint version {ckpt.VERSION + 1}; this one "
            f"reads up to {ckpt.VERSION}); upgrade cnnlab to load it",
        ),
    ],
    ids=["a list", "no marker", "no version", "version 0", "text version", "float", "newer"],
)
def test_a_file_that_is_not_a_valid_cnnlab_checkpoint_is_refused_with_its_reason(
    tmp_path, content, says
):
    """Each refusal is a CheckpointError that names the file and says what is wrong."""
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(info.value).startswith(f"{path} {says}")


def test_a_run_folder_loads_its_last_checkpoint_even_beside_a_best_one(tmp_path):
    """Resuming reads last.pt: the folder's best.pt is for looking at the model."""
    for name, epoch in (("best.pt", 1), ("last.pt", 2)):
        ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": epoch}, tmp_path / name)
    assert ckpt.load_checkpoint(tmp_path)["epoch"] == 2
    (tmp_path / "empty").mkdir()  # a run folder with no checkpoint yet
    with pytest.raises(CheckpointError, match=r"^checkpoint .*empty.last\.pt does not exist"):
        ckpt.load_checkpoint(tmp_path / "empty")


def test_a_run_folder_shows_its_best_checkpoint_else_its_last(tmp_path):
    """Looking at a trained model (eval, export, features) takes best.pt when the run has one,
    else last.pt; a file is itself, its folder the run's."""
    (tmp_path / "last.pt").touch()
    assert ckpt.checkpoint_path(tmp_path) == (tmp_path / "last.pt", tmp_path)
    assert ckpt.checkpoint_path(str(tmp_path)) == (tmp_path / "last.pt", tmp_path)
    (tmp_path / "best.pt").touch()
    assert ckpt.checkpoint_path(tmp_path) == (tmp_path / "best.pt", tmp_path)
    assert ckpt.checkpoint_path(str(tmp_path / "last.pt")) == (tmp_path / "last.pt", tmp_path)


# --- checkpoints: rebuilding the model ----------------------------------------------------------


def test_rebuild_model_puts_the_saved_weights_on_the_asked_device():
    """The model comes back on `device` (meta stands in for a GPU), on the CPU by default;
    load_checkpoint's map_location reaches torch.load."""
    on_meta = ckpt.load_checkpoint(OLD, map_location="meta")["model_state"]
    assert {t.device.type for t in on_meta.values()} == {"meta"}
    saved = ckpt.load_checkpoint(OLD)
    model = ckpt.rebuild_model(saved, "meta")
    assert {p.device.type for p in model.state_dict().values()} == {"meta"}
    model = ckpt.rebuild_model(saved)
    for name, tensor in model.state_dict().items():
        assert tensor.device.type == "cpu" and torch.equal(tensor, saved["model_state"][name])


def test_rebuild_model_of_the_training_package_refuses_a_path_saying_what_reads_one():
    with pytest.raises(CheckpointError) as info:
        ckpt.rebuild_model("run/best.pt")
    assert str(info.value) == (
        "rebuild_model here takes a loaded checkpoint, not 'run/best.pt': give "
        "load_checkpoint(path), or call cnnlab.rebuild_model(path), which reads model files"
    )


def test_rebuild_model_hands_a_file_and_the_device_to_the_model_file_loader(monkeypatch):
    """A path goes to load_model_file with the asked device (a GPU's, which this machine may
    not have); an ONNX file, which holds no PyTorch module, is refused saying what runs it."""
    from cnnlab.deploy import model_file

    calls, module = [], nn.Linear(2, 2)

    def load(path, device):
        calls.append((path, device))
        return types.SimpleNamespace(module=None if str(path).endswith(".onnx") else module)

    monkeypatch.setattr(model_file, "load_model_file", load)
    assert model_file.rebuild_model("run/best.pt", "cuda:1") is module
    assert calls == [("run/best.pt", "cuda:1")]
    with pytest.raises(CheckpointError) as info:
        model_file.rebuild_model(Path("run/best.onnx"))
    assert calls[1] == (Path("run/best.onnx"), "cpu")
    assert str(info.value) == (
        "run/best.onnx is an ONNX file: onnxruntime runs it, PyTorch cannot load it; use "
        "cnnlab.Predictor, or the checkpoint or .safetensors file it was exported from"
    )


def test_weights_for_another_architecture_are_refused_naming_the_saved_one():
    """A size mismatch becomes one line that says what the checkpoint holds."""
    state = {
        "model_state": nn.Linear(3, 2).state_dict(),
        "model_name": "tiny_net",
        "model_args": {"num_classes": 2, "in_channels": 3},
    }
    with pytest.raises(CheckpointError) as info:
        ckpt.load_model_state(nn.Linear(4, 2), state)
    assert str(info.value) == (
        "checkpoint holds tiny_net with 2 classes and 3 input channels, which does not fit "
        "this model; evaluate it with the data set it was trained on"
    )


# --- checkpoints: random states ------------------------------------------------------------------


def draws() -> list:
    """The next numbers of every generator a run uses (numpy's normal uses its cached one)."""
    return [
        torch.rand(3).tolist(),
        float(np.random.standard_normal()),
        np.random.rand(2).tolist(),
        random.random(),
    ]


def test_random_states_come_back_through_a_checkpoint_file(tmp_path):
    """torch's, numpy's (its cached Gaussian included) and Python's generators draw the same
    numbers after a save, a weights_only load and a restore."""
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # numpy now holds the second of a pair of normals
    assert np.random.get_state()[3] == 1
    saved = {"format": ckpt.FORMAT, "version": 1, "rng": ckpt.rng_state(CPU)}
    assert "cuda" not in saved["rng"]
    ckpt.save_checkpoint(saved, tmp_path / "rng.pt")
    expected = draws()
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    ckpt.set_rng_state(ckpt.load_checkpoint(tmp_path / "rng.pt")["rng"], CPU)
    assert draws() == expected


def test_a_python_random_state_whose_tuples_became_lists_restores_too():
    """Some loaders give lists for tuples; random.setstate takes only tuples."""
    random.seed(5)
    state = ckpt.rng_state(CPU)
    expected = random.random()
    version, internal, gauss = state["python"]
    state["python"] = [version, list(internal), gauss]
    random.seed(6)
    ckpt.set_rng_state(state, CPU)
    assert random.random() == expected


class CudaGenerator:
    """Stands in for torch.cuda's generator functions on a machine without a GPU."""

    def __init__(self) -> None:
        self.state = torch.arange(4, dtype=torch.uint8)
        self.calls: list[tuple] = []

    def get_rng_state(self, device):
        self.calls.append(("get", device))
        return self.state

    def set_rng_state(self, state, device):
        self.calls.append(("set", state, device))


@pytest.fixture
def cuda(monkeypatch) -> CudaGenerator:
    fake = CudaGenerator()
    monkeypatch.setattr(torch.cuda, "get_rng_state", fake.get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", fake.set_rng_state)
    return fake


def test_a_gpu_runs_random_state_includes_its_devices_generator(cuda):
    """On a GPU, that GPU's generator (dropout masks) is saved and restored, on that GPU."""
    gpu = torch.device("cuda", 1)
    state = ckpt.rng_state(gpu)
    assert state["cuda"] is cuda.state and cuda.calls == [("get", gpu)]
    ckpt.set_rng_state(state, gpu)
    assert cuda.calls[1:] == [("set", cuda.state, gpu)]


def test_resuming_across_cpu_and_gpu_leaves_the_gpu_generator_alone(cuda):
    """A GPU run resumed on the CPU, or a CPU run resumed on a GPU, touches no CUDA state."""
    on_gpu = {**ckpt.rng_state(CPU), "cuda": cuda.state}
    ckpt.set_rng_state(on_gpu, CPU)
    ckpt.set_rng_state(ckpt.rng_state(CPU), torch.device("cuda", 0))
    assert cuda.calls == []
