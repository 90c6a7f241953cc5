"""Training on several processes under torchrun, with the steps one process would take.

torchrun (PyTorch's launcher and rendezvous) starts the processes and sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `World.from_env()` reads them, and a plain `cnnlab
train` is a world of one that touches none of this. Each process trains a
DistributedDataParallel copy of the model: NCCL between GPUs (one per local rank), Gloo on CPUs.

Why N processes take the same steps as one: `--batch-size` is the global batch. Every process
draws the same permutation and takes its part of each batch (data/loader.py), and its loss is
weighted by its share of the batch, n_rank / n_batch (with class weights, its share of the
batch's summed weights, the mean's denominator). DDP's all-reduce then SUMS the gradients
(a comm hook; DDP's own hook averages, which is only right for equal parts), so the update is
the gradient of the whole batch's mean loss even when the batch does not divide evenly: the
same idea as --cpu-slices (cpu_split.py), across processes. Without BatchNorm, 1 and N
processes agree to float rounding. With it, each process normalises with its own part's
statistics, or the global batch's with --sync-bn (SyncBatchNorm, GPUs only); the running
statistics saved are rank 0's (DDP broadcasts them every step).

Every decision that ends or changes the run (a stop signal, a NaN loss) is taken from values
reduced across processes, so every rank takes it at the same step; a rank that cannot reach
the others fails its collective (after --dist-timeout at the most) and says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError, ConfigError, first_line
from cnnlab.training.cpu_split import loss_weight


class LostContact(CnnlabError):
    """A collective failed: another process died, or did not answer within --dist-timeout."""

    exit_code = 1  # not bad input: the CLI's code for a run that failed


@dataclass(frozen=True)
class Link:
    """A process group while it is up: the Gloo group that carries the CPU-side votes (stop
    signals), the rendezvous store, and the prefix of this group's keys in that store."""

    flags: Any
    store: Any
    prefix: str


@dataclass(frozen=True)
class World:
    """The processes of a run, and this one's place among them; `link` is the process group
    they share, from `process_group` (None before it starts, and in a world of one)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    launched: bool = False  # started by torchrun (or another launcher setting RANK)
    link: Link | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> World:
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls()
        try:
            world = cls(
                rank=int(env["RANK"]), size=int(env["WORLD_SIZE"]),
                local_rank=int(env.get("LOCAL_RANK", "0")),
                local_size=int(env.get("LOCAL_WORLD_SIZE", "1")), launched=True,
            )  # fmt: skip
        except ValueError:
            raise ConfigError(
                "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; start several "
                "processes with torchrun, e.g. `torchrun --nproc_per_node=2 -m cnnlab train`"
            ) from None
        if not 0 <= world.rank < world.size:
            raise ConfigError(f"RANK {world.rank} is not in 0..WORLD_SIZE-1 ({world.size})")
        return world

    @property
    def writes(self) -> bool:
        """Whether this process writes files and prints (rank 0 only)."""
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over every process (in place); unchanged in a world of one."""
        if self.launched:
            with collective("summing metrics"):
                torch.distributed.all_reduce(values)
        return values

    def smallest(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise smallest of every process's `values` (in place)."""
        if self.launched:
            with collective("comparing metrics"):
                torch.distributed.all_reduce(values, torch.distributed.ReduceOp.MIN)
        return values

    def largest(self, value: int) -> int:
        """The largest of every process's `value` (a blocking vote, for rare decisions)."""
        if not self.launched:
            return value
        tensor = torch.tensor([value], dtype=torch.int64)
        with collective("agreeing to stop"):
            torch.distributed.all_reduce(
                tensor, torch.distributed.ReduceOp.MAX, group=self.linked().flags
            )
        return int(tensor)

    def linked(self) -> Link:
        """The process group's Link; a launched world gets one from `process_group`."""
        if self.link is None:
            raise RuntimeError("a collective of a launched World outside its process_group")
        return self.link

    def rank0_text(self, text: str, key: str) -> str:
        """Rank 0's `text` in every process (a run folder's timestamped name, say), through
        the rendezvous store: strings, never pickles."""
        if not self.launched:
            return text
        link = self.linked()
        store, key = link.store, f"{link.prefix}/{key}"
        with collective("sharing the run folder"):
            if self.rank == 0:
                store.set(key, text)
            return store.get(key).decode()


def process_device(device: torch.device, cfg: Any, world: World) -> torch.device:
    """This process's device: under torchrun, `cuda` is the GPU of its local rank. Refuses
    what a process group cannot do, before one starts."""
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError(
            "--sync-bn needs GPUs (torch's SyncBatchNorm runs on CUDA only); remove it, and "
            "each process normalises with its own part of the batch"
        )
    if not world.launched or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"torchrun trains on cuda or cpu, not {device.type}; use --device cpu")
    if device.index is not None and world.local_size > 1:
        raise ConfigError(
            f"under torchrun each process takes the GPU of its local rank; give --device cuda "
            f"(or auto), not {cfg.device}"
        )
    count = torch.cuda.device_count()
    if world.local_size > count:
        raise ConfigError(
            f"torchrun started {world.local_size} processes on this machine, which has {count} "
            f"GPU(s); use --nproc_per_node={count} or fewer"
        )
    return torch.device("cuda", world.local_rank if device.index is None else device.index)


@contextlib.contextmanager
def process_group(world: World, device: torch.device, timeout_s: int) -> Iterator[World]:
    """torch.distributed's process group for the run (nothing in a world of one): NCCL for
    CUDA, Gloo for the CPU, plus a Gloo group for the CPU-side votes (stop signals). Gives
    `world` linked to the group, for the collectives that need it."""
    if not world.launched:
        yield world
        return
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    backend = "nccl" if device.type == "cuda" else "gloo"
    with collective("starting the process group", world.rank):
        where = dict(rank=world.rank, world_size=world.size, timeout=timeout)
        if device.type == "cuda":
            dist.init_process_group(backend, device_id=device, **where)
        else:
            dist.init_process_group(backend, **where)
        flags = dist.new_group(backend="gloo", timeout=timeout)
        store = dist.distributed_c10d._get_default_store()
        # torchrun's store outlives a process group (`--seeds` starts one per run), so each
        # group's keys get a prefix of their own: its number, which every rank counts alike
        number = store.add(f"cnnlab/groups/rank{world.rank}", 1)
    try:
        yield replace(world, link=Link(flags, store, f"cnnlab/{number}"))
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def collective(doing: str, rank: int | None = None) -> Iterator[None]:
    """Turn a failed collective into one line: which rank, doing what, and why."""
    import torch.distributed as dist

    try:
        yield
    except (dist.DistError, RuntimeError) as err:
        if not is_collective_failure(err):
            raise  # the model's own errors (shapes, memory) keep their type and message
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else os.environ.get("RANK", "?")
        why = re.sub(r"\[[^\]]*\.(?:cc|cpp|h):\d+\] ", "", str(err))  # C++ source paths
        raise LostContact(
            f"rank {rank} lost contact with the other processes while {doing} "
            f"({first_line(RuntimeError(why), 160)}); a process died or stopped answering. The "
            "last checkpoint is kept: resume the run with the same or another number of processes"
        ) from None


def is_collective_failure(err: BaseException) -> bool:
    """Whether `err` came from the process group. Gloo reports a dead peer during backward as
    a plain RuntimeError ("Read error ... Connection reset by peer"), so the message decides."""
    import torch.distributed as dist

    if isinstance(err, dist.DistError):
        return True
    text = str(err).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout"))


def sum_gradients(process_group, bucket):
    """DDP comm hook: all-reduce SUM (each process's loss already carries its share). No
    annotations: DDP compares them with its own classes, and these would be strings."""
    work = torch.distributed.all_reduce(bucket.buffer(), group=process_group, async_op=True)
    return work.get_future().then(lambda done: done.value()[0])


class ShardStep:
    """forward → loss → backward on this process's part of each batch, as a DDP module, with
    the loss weighted by the part's share of the batch (see the top of this module). The
    training loop calls it where it calls SplitStep (cpu_split.py): same methods."""

    def __init__(
        self, model: nn.Module, loss_fn: nn.Module, loader: Any, device: torch.device, *,
        autocast: torch.autocast | None = None, global_loss: bool = False, compile: bool = False,
    ):  # fmt: skip
        self.model, self.loss_fn, self.loader, self.device = model, loss_fn, loader, device
        self.autocast, self.compile = autocast, compile
        # LBFGS decides its line search from the loss: every process must see the same one
        self.global_loss = global_loss
        self.trainable: tuple[bool, ...] = ()
        self.ddp: nn.Module | None = None
        self.follow_requires_grad()

    def follow_requires_grad(self) -> None:
        """(Re)wrap the model when the parameters that learn change (--unfreeze-epoch): DDP
        reduces the gradients of the parameters that required them when it was built."""
        from torch.nn.parallel import DistributedDataParallel

        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if trainable == self.trainable:
            return
        with collective("wrapping the model in DistributedDataParallel"):
            ddp = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        ddp.register_comm_hook(None, sum_gradients)
        self.ddp = torch.compile(ddp) if self.compile else ddp
        self.trainable = trainable

    def forward_backward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This part's logits (n, classes) and mean loss; every process's .grad then holds the
        whole batch's gradient."""
        n = labels.shape[0]
        with self.autocast or contextlib.nullcontext(), collective("training a step"):
            logits = self.ddp(images)
            # an empty part (a last batch smaller than the world) still joins the all-reduce
            loss = self.loss_fn(logits, labels) if n else logits.sum() * 0.0
            share = self.share(labels)
            (loss * share).backward()
            if not self.global_loss:
                return logits.detach(), loss.detach()
            batch_loss = (loss.detach().float() * share).reshape(1)
            torch.distributed.all_reduce(batch_loss)
        return logits.detach(), batch_loss[0]

    def share(self, labels: torch.Tensor) -> float | torch.Tensor:
        """This part's share of the batch's mean loss: n_rank / n_batch, or with class weights
        its summed weights over every process's (one more all-reduce, of one number)."""
        if getattr(self.loss_fn, "weight", None) is None:
            return labels.shape[0] / self.loader.batch_total
        mine = torch.as_tensor(loss_weight(self.loss_fn, labels), dtype=torch.float32)
        total = mine.reshape(1).clone()
        torch.distributed.all_reduce(total)
        return mine / total[0]

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Inference on this process's part (evaluation): the plain module, no collectives."""
        return self.model(images)

    def close(self) -> None:
        self.ddp = None


class StopVote:
    """Whether every process stops after this step: each step a process's signal (0 if none)
    goes into an all-reduce (MAX) that runs while the next step computes, and its result,
    the same in every process, is read one step later. So all ranks stop at the same step,
    without waiting for each other at every step."""

    def __init__(self, world: World):
        self.world = world
        self.pending: tuple[Any, torch.Tensor] | None = None

    def __call__(self, signum: int | None) -> int | None:
        if not self.world.launched:
            return signum
        agreed = self.result()
        flag = torch.tensor([signum or 0], dtype=torch.int64)
        with collective("agreeing to stop"):
            work = torch.distributed.all_reduce(
                flag, torch.distributed.ReduceOp.MAX, group=self.world.linked().flags, async_op=True
            )
        self.pending = (work, flag)
        return agreed

    def result(self) -> int | None:
        """The last vote's signal (None: no process was signalled); waits for it."""
        if self.pending is None:
            return None
        work, flag = self.pending
        self.pending = None
        with collective("agreeing to stop"):
            work.wait()
        return int(flag) or None


def seed_own_stream(world: World, seed: int, step: int) -> None:
    """Ranks after 0 draw dropout masks from a stream of their own (rank 0 keeps the one
    checkpoints save), so the processes' parts of a batch get independent masks."""
    if world.rank > 0:
        from cnnlab.data.loader import derive_seed

        torch.manual_seed(derive_seed(seed, step, world.rank))
