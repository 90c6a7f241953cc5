"""Building a run: everything it trains with, made once from a TrainConfig (`build_session`).

Everything that can fail on bad input (config, device, data, model, run folder, resume rules)
fails here, before a file is written. `trainer.py` then runs the session. A Session saves and
restores itself with `state_dict()` / `load_state_dict()`, the torch convention, and that dict
is the checkpoint.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import TrainConfig, check_weights_file
from cnnlab.config.fields import FieldError
from cnnlab.errors import ConfigError
from cnnlab.models.args import WEIGHT_ARGS, architecture_args
from cnnlab.models.heads import split_parameters
from cnnlab.models.own import check_output, check_recorded, keep_instance, model_source
from cnnlab.process import keep_freed_memory
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.cpu_split import SplitStep, can_split, default_slices
from cnnlab.training.determinism import determinism_caveats, seed_run
from cnnlab.training.device import resolve_device
from cnnlab.training.distributed import ShardStep, World, process_device, seed_own_stream
from cnnlab.training.fast_ops import use_fast_cpu_ops
from cnnlab.training.lookahead import Lookahead
from cnnlab.training.loop import EpochSums
from cnnlab.training.lr_find import recorded_lr_find
from cnnlab.training.mixing import BatchMixer, batch_mixer
from cnnlab.training.optim import make_loss, make_optimizer, make_scheduler, needs_closure
from cnnlab.training.resume_rules import check_resumable
from cnnlab.training.run_dir import default_run_name, prepare_run_dir
from cnnlab.training.stopping import Watch

# the options that choose the starting weights: (flag, TrainConfig field = builder argument)
WEIGHT_FLAGS = (("--pretrained", "pretrained"), ("--weights-file", "weights_file"))


@dataclass
class TrainState:
    """Where the run is: counters, metrics, and the sums of the epoch in progress (the part
    of it done when a checkpoint was taken mid-epoch). Everything a resume needs besides the
    model, optimizer and schedule."""

    sums: EpochSums
    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches finished in the epoch in progress
    best_accuracy: float = -1.0  # the selection accuracy of best.pt
    metrics: list[dict[str, Any]] = field(default_factory=list)
    watch: Watch = field(default_factory=Watch)  # early stopping's count
    stopped: str | None = None  # why the run stopped before its last epoch

    def state_dict(self, world: World) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "best_accuracy": self.best_accuracy,
            "metrics": list(self.metrics),
            "epoch_sums": self.sums.state_dict(world),  # every process's, summed
            "early_stop": vars(self.watch).copy(),
            "stopped": self.stopped,
        }

    def load_state_dict(self, saved: dict[str, Any], world: World) -> None:
        self.epoch, self.step = saved["epoch"], saved["step"]
        self.batch_in_epoch, self.best_accuracy = saved["batch_in_epoch"], saved["best_accuracy"]
        self.metrics = list(saved["metrics"])
        self.watch = Watch(**saved.get("early_stop", {}))  # runs saved before it: counted anew
        self.stopped = None  # a stopped run resumes only where the stop no longer holds
        self.sums = EpochSums.zeros(self.sums.device, self.step)
        if self.batch_in_epoch and world.rank == 0:  # every process's sums: counted once
            self.sums.load_state_dict(saved["epoch_sums"])

    def start_epoch(self) -> EpochSums:
        """The sums of the epoch about to run: fresh, or a part-done epoch's as restored."""
        if self.batch_in_epoch == 0:
            self.sums = EpochSums.zeros(self.sums.device, self.step)
        return self.sums


@dataclass(kw_only=True)
class RunParts:
    """What a run trains with: the model, its data, optimizer, schedule and loss, and how a
    batch is split (across CPU threads: SplitStep; across torchrun's processes: ShardStep,
    made once the process group is up; None: not at all)."""

    model: nn.Module  # the module whose state_dict is saved
    forward_model: nn.Module  # the same model, compiled when cfg.compile
    train_loader: Any
    val_loader: Any = None  # None: no validation split, the test split chooses
    test_loader: Any  # None with --no-eval-test
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loss_fn: nn.Module
    num_classes: int
    backbone: list[nn.Parameter] = field(default_factory=list)  # what --freeze-backbone freezes
    split: SplitStep | ShardStep | None = None
    lookahead: Lookahead | None = None  # --lookahead-decay's running average
    mix: BatchMixer | None = None  # --mixup / --cutmix

    def state_dict(self) -> dict[str, Any]:
        saved = {
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict() if self.scheduler else None,
        }
        if self.lookahead is not None:
            saved["lookahead_state"] = self.lookahead.state_dict()
        return saved

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        ckpt.load_model_state(self.model, saved)
        self.optimizer.load_state_dict(saved["optimizer_state"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler_state"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(saved["lookahead_state"])

    def set_backbone_frozen(self, frozen: bool) -> None:
        """A frozen parameter gets no gradient, so the optimizer skips it. Batch norm layers of
        a frozen backbone still update their running statistics in train mode, as fastai's
        freezing does: the statistics follow the new data (grey 28×28 digits are far from
        ImageNet's), while the weights that were learned stay as they are."""
        for param in self.backbone:
            param.requires_grad_(not frozen)
        if isinstance(self.split, ShardStep):
            self.split.follow_requires_grad()

    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def close(self) -> None:
        """Hand the model back as an ordinary, trainable one. No DDP re-wrap here: that is a
        collective, and a rank closing after an error must not wait for the others in it."""
        for param in self.backbone:
            param.requires_grad_(True)
        if self.split is not None:
            self.split.close()


@dataclass(kw_only=True)
class Session:
    """One run, built once by `build_session`: what it is and where it runs (config, RunInfo,
    device, folder, processes), what it trains with (`parts`) and where it stands (`state`)."""

    cfg: TrainConfig
    info: ckpt.RunInfo  # what every checkpoint and config.json say the run is
    device: torch.device
    run_dir: Path
    world: World  # the processes under torchrun (else one); linked once the group is up
    parts: RunParts
    state: TrainState
    resumed: bool = False  # restored from a checkpoint by load_state_dict
    facts: dict[str, Any] = field(default_factory=dict)  # parameter count, data: config.json
    caveats: list[str] = field(default_factory=list)  # what --deterministic cannot promise
    watcher: EpochWatcher | None = None  # Given.watcher

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: the run as it stands, enough to continue it step for step."""
        return {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            **self.info.to_dict(),
            **self.parts.state_dict(),
            **self.state.state_dict(self.world),
            "finished": self.state.epoch >= self.cfg.epochs or self.state.stopped is not None,
            "rng": ckpt.rng_state(self.device),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Put model, optimizer, schedule, RNGs and counters back as the checkpoint left them."""
        self.parts.load_state_dict(saved)
        ckpt.set_rng_state(saved["rng"], self.device)
        self.state.load_state_dict(saved, self.world)
        self.resumed = True

    def join_world(self, world: World) -> None:
        """Under torchrun, once the process group is up (`world` is linked to it): rank 0's
        run folder (its name may hold a timestamp), the DDP step, and each rank's own dropout
        stream."""
        self.world = world
        if not world.launched:
            return
        if not self.resumed:
            self.run_dir = Path(world.rank0_text(str(self.run_dir), "run_dir"))
        parts, cfg = self.parts, self.cfg
        autocast = torch.autocast(self.device.type, torch.bfloat16) if cfg.amp else None
        parts.split = ShardStep(
            parts.model, parts.loss_fn, parts.train_loader, self.device, autocast=autocast,
            global_loss=needs_closure(parts.optimizer), compile=cfg.compile,
        )  # fmt: skip
        seed_own_stream(world, cfg.seed, self.state.step)

    def backbone_frozen(self, epoch: int) -> bool:
        """Whether the backbone is frozen in `epoch` (0-based): decided by the epoch alone, so
        a resumed run lands in the phase the uninterrupted run was in."""
        cfg = self.cfg
        return cfg.freeze_backbone and (cfg.unfreeze_epoch is None or epoch < cfg.unfreeze_epoch)

    def freeze_for_epoch(self, epoch: int, *, first: bool) -> str | None:
        """Freeze or unfreeze the backbone for `epoch`; a line to print when a phase starts
        (frozen: at the process's `first` epoch; unfrozen: at --unfreeze-epoch)."""
        frozen = self.backbone_frozen(epoch)
        self.parts.set_backbone_frozen(frozen)
        if frozen and first:
            until = self.cfg.unfreeze_epoch
            later = f" for {until} epoch{'s' * (until != 1)}" if until is not None else ""
            return (
                f"backbone frozen{later}: training the head's {self.trainable_parameters(epoch):,}"
                f" of {self.parts.total_parameters():,} parameters"
            )
        if self.cfg.freeze_backbone and epoch == self.cfg.unfreeze_epoch:
            scale = self.cfg.backbone_lr_scale
            lr = f" at {scale:g} × the head's lr" if scale != 1 else ""
            return f"epoch {epoch + 1}: backbone unfrozen, training all parameters{lr}"
        return None

    def trainable_parameters(self, epoch: int) -> int:
        """The parameters that learn in `epoch`."""
        frozen = sum(p.numel() for p in self.parts.backbone) if self.backbone_frozen(epoch) else 0
        return self.parts.total_parameters() - frozen


# sees each epoch's metrics row once it is complete and may stop the run: a reason, or None
EpochWatcher = Callable[[dict[str, Any]], str | None]


@dataclass
class Given:
    """What cnnlab.train was handed in Python besides a config: a model that is already built
    (its class is then `cfg.model`), data (ImageData from data/own.py), and a watcher of each
    epoch's row that may stop the run as early stopping does (a sweep's pruner: sweeps/)."""

    model: nn.Module | None = None
    data: Any = None
    watcher: EpochWatcher | None = None


def build_session(
    cfg: TrainConfig,
    saved: dict[str, Any] | None = None,
    world: World | None = None,
    given: Given | None = None,
    *,
    folder: bool = True,
) -> Session:
    """Everything `cfg` trains with; with `saved` (a last.pt), as that checkpoint left it.
    `world`: the processes torchrun started (default: read from the environment); `given`:
    a model object or data handed over in Python; `folder=False`: a session that will not
    train a run (the learning-rate finder's), so its run folder is neither checked nor made
    (`run_dir` is the folder a run would have)."""
    from cnnlab.data import load_dataset
    from cnnlab.data.datasets import configured
    from cnnlab.data.holdout import with_validation
    from cnnlab.models import count_parameters
    from cnnlab.models.own import canonical_model_name

    given = given or Given()
    cfg.validate()
    cfg.model = canonical_model_name(cfg.model)  # your own model's file: its absolute path
    if given.data is not None:
        cfg.dataset = given.data.name
    world = World.from_env() if world is None else world
    if saved is None:  # a resumed run's weights come from last.pt, never from these again
        check_weight_options(cfg)
    device = process_device(resolve_device(cfg.device), cfg, world)
    if device.type == "cpu":
        keep_freed_memory()
    seed_run(cfg)
    if given.data is not None:
        data = configured(given.data, image_size=cfg.image_size, normalize=cfg.normalize)
    else:
        data = load_dataset(
            cfg.dataset, cfg.data_dir, download=cfg.download, image_size=cfg.image_size,
            test_fraction=cfg.test_fraction, seed=cfg.seed, normalize=cfg.normalize,
        )  # fmt: skip
    data = with_validation(data, cfg.val_fraction, cfg.seed)
    check_reflections(cfg, data.input_shape)
    if saved is not None and given.model is None:  # your own code: the code the run trained
        check_recorded(cfg.model, saved.get("model_source"), Path(cfg.out_dir) / cfg.name)
    model, info = _build_model(cfg, data, device, fresh=saved is None, world=world, given=given)
    airbench_init(cfg, model, data, fresh=saved is None)  # (may refuse the model: no file yet)
    if saved is not None:
        run_dir = Path(cfg.out_dir) / cfg.name
        check_resumable(saved, cfg, info.model_args, run_dir, data)
    elif folder:
        run_dir = prepare_run_dir(cfg)
    else:  # never made: the finder's session trains no run
        run_dir = Path(cfg.out_dir) / (cfg.name or default_run_name(cfg))
    train_loader, val_loader, test_loader = _loaders(cfg, data, device, world)
    set_batch_norms(model, cfg.bn_momentum, scale_fixed=cfg.bn_scale_fixed)
    optimizer = make_optimizer(cfg, model, data.num_classes)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    parts = RunParts(
        model=model, forward_model=torch.compile(model) if cfg.compile else model,
        train_loader=train_loader, val_loader=val_loader, test_loader=test_loader,
        optimizer=optimizer, scheduler=make_scheduler(cfg, optimizer, len(train_loader)),
        loss_fn=make_loss(cfg, data.num_classes, device), num_classes=data.num_classes,
        backbone=split_parameters(model, data.num_classes)[1] if cfg.freeze_backbone else [],
        mix=batch_mixer(cfg.mixup, cfg.cutmix, data.num_classes, cfg.seed, world.rank),
    )  # fmt: skip
    parts.split = make_split(cfg, parts, device, world)
    if cfg.lookahead_decay:
        steps = math.ceil(len(train_loader) / cfg.accumulate_batches) * cfg.epochs
        parts.lookahead = Lookahead(model, cfg.lookahead_decay, cfg.lookahead_every, steps)
    session = Session(
        cfg=cfg, info=info, device=device, run_dir=run_dir, world=world, parts=parts,
        state=TrainState(EpochSums.zeros(device, 0)), caveats=determinism_caveats(cfg, device),
        watcher=given.watcher,
        facts={
            "parameters": count_parameters(model),
            "data": {
                "location": data.location, "train": len(data.train),
                "val": len(data.val) if data.val is not None else 0, "test": len(data.test),
            },
            "selection": "val" if data.val is not None else "test",  # the split that chooses
            "processes": world.size,
        },
    )  # fmt: skip
    if saved is not None:
        session.load_state_dict(saved)
        session.facts.update(recorded_lr_find(session.run_dir))  # config.json keeps it
    session.facts["trainable_parameters"] = session.trainable_parameters(session.state.epoch)
    return session


def set_batch_norms(model: nn.Module, momentum: float | None, *, scale_fixed: bool) -> None:
    """--bn-momentum on every batch norm layer, and --bn-scale-fixed: their weights (the
    scale) left out of training, on every build, so the optimizer never holds them."""
    for norm in model.modules():
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            continue
        if momentum is not None:
            norm.momentum = momentum
        if scale_fixed and norm.weight is not None:
            norm.weight.requires_grad_(False)


def airbench_init(cfg: TrainConfig, model: nn.Module, data: Any, *, fresh: bool) -> None:
    """--dirac-init and --whiten-init, on a fresh run's model (a resumed one's weights come
    from last.pt); the whitened filters are fixed on every build, so the optimizer never
    holds them, resumed or not."""
    from cnnlab.models.init import dirac_init, first_conv, whiten_first_conv

    if fresh and cfg.dirac_init:
        dirac_init(model)
    if not cfg.whiten_init:
        return
    if fresh:
        whiten_first_conv(model, normalised_images(data, cfg.whiten_images), cfg.whiten_eps)
    first_conv(model).weight.requires_grad_(False)


def normalised_images(data: Any, count: int) -> torch.Tensor:
    """The first `count` training images as the model sees them (normalised, unaugmented),
    on the CPU: (count, C, H, W) float32."""
    from cnnlab.data import make_loader

    loader = make_loader(data, "train", batch_size=min(count, 1024), num_workers=0)
    batches, seen = [], 0
    for images, _ in loader:
        batches.append(images[: count - seen])
        seen += len(batches[-1])
        if seen >= count:
            break
    return torch.cat(batches)


def check_weight_options(cfg: TrainConfig) -> None:
    """--pretrained / --weights-file need a builder that loads weights (the tv_* models) and,
    for a file, the file: refused in one line before the data is read or a file written."""
    from cnnlab.models import model_info

    asked = [(flag, key) for flag, key in WEIGHT_FLAGS if getattr(cfg, key)]
    if not asked:
        return
    check_weights_file(cfg)
    builder_takes = inspect.signature(model_info(cfg.model).builder).parameters
    for flag, key in asked:
        if key not in builder_takes:
            raise ConfigError(
                "--pretrained and --weights-file are for tv_* models (torchvision's ImageNet "
                f"weights); {cfg.model} has no {key} argument, so remove {flag} or choose a "
                "tv_* model (`cnnlab models 'tv_*'`)"
            )


def check_reflections(cfg: TrainConfig, input_shape: tuple[int, int, int]) -> None:
    """Reflect padding mirrors the image at its edges, so it needs padding below the images'
    side: refused in one line before a file is written."""
    from cnnlab.data.augment import Augment

    if not cfg.augment or cfg.pad_mode != "reflect":
        return
    side = min(input_shape[1:])
    padding = Augment(cfg.crop_padding).padding_for(input_shape[1])
    if padding >= side:
        raise FieldError(
            "crop_padding", f"{{crop_padding}} must be below the images' side ({side}) with "
            f"{{pad_mode}} reflect, got {{got}}; use {{pad_mode}} zeros for more", padding,
        )  # fmt: skip


def _loaders(cfg: TrainConfig, data: Any, device: torch.device, world: World) -> tuple:
    """The train, validation (None without one) and test loaders (None with --no-eval-test:
    measured once, later, for the chosen model); under torchrun each yields
    this process's part of every batch."""
    from cnnlab.data import make_loader
    from cnnlab.data.augment import Augment

    augment = cfg.augment and Augment(cfg.crop_padding, cfg.pad_mode, cfg.flip)
    shard = dict(rank=world.rank, world_size=world.size, device=device)
    # a last batch of one sample would break BatchNorm on 1×1 maps; dropping it costs nothing
    train = make_loader(
        data, "train", batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
        augment=augment, jpeg_quality=cfg.jpeg_quality,
        drop_last=len(data.train) % cfg.batch_size == 1, **shard,
    )  # fmt: skip
    measured = ("val", "test") if cfg.eval_test else ("val",)  # --no-eval-test: not the test
    evaluated = [
        make_loader(data, split, batch_size=cfg.eval_batch_size, **shard)
        if split in measured and getattr(data, split) is not None else None
        for split in ("val", "test")
    ]  # fmt: skip
    return train, *evaluated


def _build_model(
    cfg: TrainConfig,
    data: Any,
    device: torch.device,
    *,
    fresh: bool,
    world: World,
    given: Given | None = None,
):
    """The model for `data`'s shape and classes, on `device`, and the RunInfo that rebuilds it.
    Only a `fresh` run loads pretrained weights or a weights file: a resumed one gets its
    weights from last.pt. --sync-bn under torchrun: SyncBatchNorm layers (the same parameters
    and state dict keys, so checkpoints load into the plain model). Your own model is tried on
    a batch first: one that does not fit the data is refused before anything trains."""
    from cnnlab.models import create_model, init_weights, model_info

    channels, height, width = data.input_shape
    from_data = dict(num_classes=data.num_classes, in_channels=channels, image_size=[height, width])
    for key in [*from_data, "init"]:
        if key in cfg.model_args:
            where = f"the data ({from_data[key]} here)" if key in from_data else "--init"
            raise ConfigError(f"--model-arg {key}: {key} comes from {where}; remove it")
    model_args = dict(**from_data, init=cfg.init, **architecture_args(cfg.model_args))
    given = given or Given()
    if given.model is not None:
        model = given.model.to(device)
    else:
        weights = weight_args(cfg) if fresh else {}
        model = create_model(cfg.model, **model_args, **weights).to(device)
    source = model_source(cfg.model)  # (after building: a missing file is named there)
    if source is not None or not model_info(cfg.model).seed:  # not cnnlab's own: tried first
        # (its lazy layers, if any, take their shapes here)
        label = cfg.model.rpartition(":")[2]
        check_output(model, label, data.input_shape, data.num_classes, device)
    if given.model is not None:
        init_weights(model, cfg.init)
        if not rebuilds_alike(model, cfg.model, model_args):  # this process rebuilds it
            hidden = {
                "hidden_args": f"{type(model).__name__}(...)",
                "instance": keep_instance(model),
            }
            source = {**(source or {}), **hidden}
    if cfg.fast_cpu_ops and device.type == "cpu" and not cfg.compile:
        use_fast_cpu_ops(model)  # same numbers, less time (see fast_ops.py)
    if cfg.sync_bn and world.launched:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    info = ckpt.RunInfo(
        model_name=cfg.model, model_args=model_args, class_names=list(data.class_names),
        mean=list(data.mean), std=list(data.std), input_shape=list(data.input_shape),
        dataset=data.name, config=cfg.to_dict(), model_source=source,
    )  # fmt: skip
    return model, info


def rebuilds_alike(model: nn.Module, name: str, model_args: dict[str, Any]) -> bool:
    """Whether `create_model(name, **model_args)` builds a model with `model`'s state dict keys
    and shapes: what a model object given in Python needs for a checkpoint to rebuild it. Built
    on the meta device: no weights allocated."""
    from cnnlab.models import create_model

    try:
        with torch.device("meta"):
            rebuilt = create_model(name, **model_args)
        shapes = [{key: tuple(value.shape) for key, value in each.state_dict().items()}
                  for each in (model, rebuilt)]  # fmt: skip
    except Exception:  # the user's class, built with arguments it may not take; lazy layers
        return False
    return shapes[0] == shapes[1]


def weight_args(cfg: TrainConfig) -> dict[str, Any]:
    """Where the builder gets its starting weights: kept out of RunInfo.model_args, so no
    checkpoint carries them and rebuilding a model never downloads or reads a file again."""
    weights = {key: value for key, value in cfg.model_args.items() if key in WEIGHT_ARGS}
    if cfg.pretrained:
        weights["pretrained"] = True
    if cfg.weights_file:
        weights["weights_file"] = cfg.weights_file
    return weights


def make_split(
    cfg: TrainConfig, parts: RunParts, device: torch.device, world: World
) -> SplitStep | None:
    """Slice CPU batches across cores when it keeps the step's meaning (see cpu_split.py)."""
    slices = cfg.cpu_slices or default_slices(cfg.deterministic)
    if cfg.deterministic and slices > 2:
        raise ConfigError(
            "--deterministic allows --cpu-slices 1 or 2 (summing more gradients "
            "in thread order is not bit-exact)"
        )
    if world.launched:  # the processes are the parallelism (ShardStep)
        return None
    if device.type != "cpu" or slices < 2 or cfg.compile or cfg.amp:
        return None
    if not can_split(parts.model):
        return None
    return SplitStep(parts.forward_model, parts.loss_fn, slices)
