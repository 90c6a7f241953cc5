"""Every setting of every command, its one default, and what it means.

Each command's options are a small dataclass here: TrainConfig (`cnnlab train`), LrFindConfig
(`cnnlab lr-find`: TrainConfig's fields and a folder), EvalConfig (`cnnlab eval`),
ModelsConfig, RecipesConfig, DatasetsConfig, SummaryConfig, ConvcalcConfig, ParamsConfig,
FeaturesConfig and ExplainConfig (the inspect commands), PlotConfig, ReportConfig and
CompareConfig (after training), PredictConfig and ExportConfig (using what was trained). The
same dataclass is filled from Python (`TrainConfig(model="lenet")`), from a TOML recipe
(`[train]` keys or top-level keys with the field names; the shipped recipes are found by name,
recipes.py) and from the command's flags, which the CLI generates from these fields
(`--batch-size` is `batch_size`). Flags override the recipe. What a field is allowed to be
(choices, a minimum, whether a resumed run may change it) lives in the field's metadata, so
checks, help texts and resume rules all read it from one place.

Nothing here imports torch: `cnnlab --help` must not wait for it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.config.fields import FieldError, coerce, field_types, opt, plain_value
from cnnlab.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "lbfgs")
# a rate each optimizer learns with on the models here (`cnnlab train` with no flag: LeNet and
# adam at 3e-3 reaches 0.75 test accuracy on Fashion-MNIST in one epoch; adam's own 1e-3, 0.61;
# sgd at 0.1 stays at chance with LeNet's sigmoids); rmsprop, adagrad and adadelta: torch's
DEFAULT_LR = {
    "sgd": 0.1, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3, "adagrad": 1e-2,
    "adadelta": 1.0, "lbfgs": 0.1,
}  # fmt: skip
LOSSES = ("cross_entropy",)
SCHEDULERS = ("none", "step", "cosine", "onecycle", "linear")
# "default": PyTorch's own init, or the seed's own where the seed sets one (net_res_deep)
INITS = ("default", "xavier", "kaiming")
PROGRESS = ("auto", "bar", "lines", "notebook", "none")
# the augmentation's choices (data/augment.py; config/ imports no torch, so they are kept here)
PAD_MODES = ("zeros", "reflect")
FLIPS = ("random", "alternate", "none")
EVAL_BATCH_SIZE = 1024  # no gradients are kept in evaluation, so batches can be larger


# Options that several commands share: one definition each, so they cannot drift apart.
def _device_opt() -> Any:
    return opt("auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps", "auto", resumable=True)


def _data_dir_opt() -> Any:
    return opt("a folder to look in first for the data set files", None, resumable=True)


def _dataset_help(default_text: str) -> str:
    return f"built-in name, npz:PATH or folder:PATH (`cnnlab datasets`){default_text}"


class Config:
    """What every command's config dataclass shares: checks, plain dicts, building from them."""

    def validate(self):
        """Check every value against its field's facts; one line naming the field if wrong (a
        FieldError: the command line names its flag)."""
        for f in dataclasses.fields(self):
            value, facts = getattr(self, f.name), f.metadata
            if facts.get("choices") and value not in facts["choices"]:
                raise ConfigError(
                    f"unknown {f.name} {value!r}; choose one of: {', '.join(facts['choices'])}"
                )
            minimum = facts.get("minimum")
            if minimum is not None and value is not None and value < minimum:
                word = "at least" if minimum else ">="
                # a positional argument is named as argparse names it, by the field's name
                flag = f.name if facts.get("argument") else facts.get("flag")
                message = f"{{{f.name}}} must be {word} {minimum}, got {{got}}"
                raise FieldError(f.name, message, value, flag)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able values (tuples become lists)."""
        return {f.name: plain_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config"):
        """Build from plain values, refusing unknown keys and values of the wrong type."""
        known = field_types(cls)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"valid keys are listed by `cnnlab {cls.command} --help`"
            )
        converted = {k: coerce(v, known[k], f"{source}: {k}") for k, v in values.items()}
        return cls(**converted)

    @classmethod
    def from_call(cls, source: str, **arguments: Any):
        """From a Python function's keyword arguments: None leaves a field at its default, a
        path becomes its text. `write_report(run, out=None)` builds its ReportConfig so."""
        values = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in arguments.items()
            if value is not None
        }
        return cls.from_dict(values, source=source)

    command = "COMMAND"  # the `cnnlab` subcommand these options belong to


@dataclass
class TrainConfig(Config):
    """A training run: each field is a `cnnlab train --flag` and a recipe key."""

    command = "train"

    # --- what to train, on what ---
    model: str = opt(
        "model name from `cnnlab models`, or your own: path/to/file.py:Name or "
        "package.module:Name (an nn.Module class or a function returning one)",
        "lenet",
    )
    model_args: dict[str, Any] = opt(
        "the model's own arguments, n_chans1=32 (for your own: its constructor's)",
        factory=dict,
    )
    dataset: str = opt(_dataset_help(""), "fashion-mnist")
    data_dir: str | None = _data_dir_opt()
    download: bool = opt(
        "download a built-in data set when it is not found on disk", True, resumable=True
    )
    image_size: int | None = opt(
        "resize the images to this size, any data set (default: folder: the first image's, "
        "others their own)",
        None,
        minimum=1,
    )
    val_fraction: float = opt(
        "share of each class of the training set held out (seeded) as the validation split, "
        "which chooses best.pt, early stopping and --target-accuracy; the test split is then "
        "measured for the report only (0: no validation split, the test split chooses, as "
        "the tutorials do)",
        0.1,
    )
    test_fraction: float = opt(
        "folder: data without train/ and test/: share of each class held out as the test "
        "split (the validation split comes from the rest)",
        0.2,
    )
    normalize: bool = opt(
        "scale pixels by the data set's mean/std (false: [0, 1] pixels, ToTensor alone)", True
    )
    augment: bool = opt(
        "random crop and horizontal flip on training batches (--crop-padding, --pad-mode and "
        "--flip say how)",
        False,
    )
    crop_padding: int | None = opt(
        "augment: pixels of padding around each image before the random crop (default: H/8, "
        "4 for 32x32; 0: no crop)",
        None,
        minimum=0,
    )
    pad_mode: str = opt(
        "augment: the crop's padding: zeros (torchvision's RandomCrop) or reflect (the image "
        "mirrored at its edges, as airbench)",
        "zeros",
        choices=PAD_MODES,
    )
    flip: str = opt(
        "augment: random (each image with chance 1/2), alternate (airbench's: each image one "
        "way in even epochs, the other way in odd ones) or none",
        "random",
        choices=FLIPS,
    )
    jpeg_quality: int = opt(
        "JPEG-compress half the training images at this quality, 1-100 (0: off): for test "
        "images saved as JPEG",
        0,
        minimum=0,
    )
    mixup: float = opt(
        "blend each training batch with itself shifted by one image, and the labels alike, "
        "the image's share drawn from Beta(a, a) per batch (torchvision's MixUp; 0: off)",
        0.0,
        minimum=0,
    )
    cutmix: float = opt(
        "paste a box of the image before it in the batch into each training image, the labels "
        "mixed by area, "
        "the kept share drawn from Beta(a, a) per batch (torchvision's CutMix; 0: off; with "
        "--mixup each batch takes one of the two)",
        0.0,
        minimum=0,
    )
    init: str = opt("weight init (default: PyTorch's or the seed's)", "default", choices=INITS)
    whiten_init: bool = opt(
        "set the first conv's filters from the training images' patches so its outputs are "
        "whitened, and keep them fixed (airbench's init)",
        False,
    )
    whiten_images: int = opt(
        "whiten-init: how many training images (the first ones) give the patches",
        5000,
        minimum=1,
    )
    whiten_eps: float = opt(
        "whiten-init: added to each eigenvalue before its square root is divided by", 5e-4
    )
    dirac_init: bool = opt(
        "start every 3x3 (odd, stride 1, same-padded) conv as the identity: its first filters "
        "pass the input through (airbench's init)",
        False,
    )

    # --- fine-tuning (tv_* models; the freezing options work for any model) ---
    pretrained: bool = opt(
        "tv_* models: start from torchvision's DEFAULT ImageNet weights (torch's cache, else "
        "downloaded)",
        False,
    )
    weights_file: str | None = opt(
        "start from this state dict file (.pth/.pt, or .safetensors) instead of the download",
        None,
    )
    freeze_backbone: bool = opt(
        "train only the classifier head; every other parameter is frozen", False
    )
    unfreeze_epoch: int | None = opt(
        "with --freeze-backbone: train the head alone for this many epochs, then everything",
        None,
        minimum=1,
    )
    backbone_lr_scale: float = opt(
        "the backbone's learning rate as a share of --lr (the new head gets --lr)", 1.0
    )

    # --- how long, how fast ---
    epochs: int = opt("number of passes over the training set", 10, minimum=1, resumable=True)
    early_stop_patience: int = opt(
        "stop after N evaluations (epochs, with --eval-every 1) without improvement of the "
        "selection accuracy (validation, else test); best.pt is the result (0: off)",
        0,
        minimum=0,
        resumable=True,
    )
    early_stop_min_delta: float = opt(
        "early stopping: the least gain of selection accuracy that counts as improvement",
        0.0,
        minimum=0,
        resumable=True,
    )
    target_accuracy: float | None = opt(
        "stop at the end of the first epoch whose selection accuracy reaches this (time to "
        "accuracy)",
        None,
        resumable=True,
    )
    batch_size: int = opt(
        "training batch size (under torchrun: the global batch, shared by the processes)",
        256,
        minimum=1,
    )
    eval_batch_size: int = opt("evaluation batch size", EVAL_BATCH_SIZE, minimum=1)
    tta: bool = opt(
        "test-time augmentation: score each test image by the mean logits of it and its mirror",
        False,
    )
    tta_translate: int = opt(
        "with --tta: also the views moved this many pixels down-right and up-left, each with "
        "its mirror, weighing half (airbench's six views with 1)",
        0,
        minimum=0,
    )

    # --- optimizer (seed 002's table), loss, schedule ---
    optimizer: str = opt(
        "the torch optimizer (adam by default: it learns without tuning, where sgd needs the "
        "right lr; the tutorials' recipes set their own)",
        "adam",
        choices=OPTIMIZERS,
    )
    lr: float | None = opt(
        "learning rate, or find (the rate the range test finds: --lr-find) (default: the "
        "optimizer's: " + ", ".join(f"{name} {rate:g}" for name, rate in DEFAULT_LR.items()) + ")",
        None,
        words=("find",),
    )
    momentum: float = opt("sgd / rmsprop momentum", 0.0, minimum=0)
    dampening: float = opt("sgd dampening for momentum", 0.0, minimum=0)
    nesterov: bool = opt("sgd Nesterov momentum (needs momentum > 0, dampening 0)", False)
    weight_decay: float = opt("L2 penalty (decoupled for adamw)", 0.0, minimum=0)
    betas: tuple[float, float] = opt("adam / adamw moment coefficients", (0.9, 0.999))
    eps: float | None = opt("optimizer epsilon (default: the optimizer's own)", None)
    amsgrad: bool = opt("adam / adamw AMSGrad variant", False)
    lbfgs_max_iter: int = opt(
        "lbfgs: iterations (loss evaluations, about) per batch", 20, minimum=1
    )
    lbfgs_history_size: int = opt("lbfgs: number of past updates kept", 100, minimum=1)
    lbfgs_line_search: bool = opt("lbfgs: strong-Wolfe line search (else a fixed lr step)", False)
    loss: str = opt("loss on logits", "cross_entropy", choices=LOSSES)
    label_smoothing: float = opt("cross-entropy label smoothing in [0, 1)", 0.0)
    class_weights: list[float] | None = opt("cross-entropy weight per class", None)
    scheduler: str = opt(
        "LR schedule (onecycle: up to --lr and down, every step, with momentum or adam's beta1 "
        "cycling 0.95-0.85 unless momentum is 0; linear: airbench's straight lines, every step)",
        "none",
        choices=SCHEDULERS,
    )
    cycle_momentum: bool = opt(
        "onecycle: cycle momentum (or adam's beta1) against the rate; false keeps the set one",
        True,
    )
    lr_start_factor: float = opt("linear schedule: the first rate, as a share of --lr", 0.2)
    warmup_fraction: float = opt("linear schedule: share of the steps spent rising to --lr", 0.23)
    lr_end_factor: float = opt("linear schedule: the last rate, as a share of --lr", 0.07)
    lr_batch_size: int | None = opt(
        "the batch size --lr is given for: the rate is scaled to the batch of each step "
        "(batch size × accumulated batches) by the linear scaling rule (default: --lr as it is)",
        None,
        minimum=1,
    )
    accumulate_batches: int = opt(
        "add up the gradients of this many batches before each optimizer step: a step's batch "
        "of batch size × this that fits in a small machine's memory",
        1,
        minimum=1,
    )
    max_grad_norm: float | None = opt(
        "clip the gradient to this total 2-norm before each step (default: no clipping)", None
    )
    bn_momentum: float | None = opt(
        "every batch norm's running-average momentum, torch's convention: the new batch's "
        "share (default: the model's own, 0.1 in torch)",
        None,
    )
    bn_bias_lr_scale: float = opt(
        "batch norm biases learn at --lr × this, with their weight decay divided by it so "
        "they decay per step as the rest do (airbench: 64)",
        1.0,
    )
    bn_scale_fixed: bool = opt(
        "keep every batch norm's scale (weight) fixed, learning only its bias (as airbench)",
        False,
    )
    lookahead_decay: float = opt(
        "Lookahead (airbench's): every --lookahead-every steps the weights move to a running "
        "average of themselves, kept with this decay, warmed up over the run (0: off); the "
        "last step ends on the average, which is what is evaluated and saved",
        0.0,
    )
    lookahead_every: int = opt("lookahead: steps between its updates", 5, minimum=1)
    step_size: int = opt("step schedule: epochs between LR drops", 30, minimum=1)
    gamma: float = opt("step schedule: LR factor at each drop", 0.1)
    lr_find: bool = opt(
        "find the rate first with the learning-rate range test (`cnnlab lr-find`; `--lr find` "
        "says the same) and train at its suggestion; config.json records both",
        False,
    )
    start_lr: float = opt("range test: its first rate", 1e-6)
    end_lr: float = opt("range test: its last rate (it stops sooner if the loss diverges)", 10.0)
    lr_find_steps: int = opt(
        "range test: its training steps (one that learns nothing runs again, 4× as long, over "
        "the upper half of the rates)",
        200,
        minimum=10,
    )

    # --- where, how reproducibly ---
    device: str = _device_opt()
    seed: int = opt("seeds model init, shuffling and augmentation", 0)
    deterministic: bool = opt(
        "bit-exact reruns and resumes (torch deterministic algorithms)", False
    )
    threads: int = opt(
        "CPU threads per op for torch (0: 1 with --cpu-slices, else torch's)",
        0,
        minimum=0,
        resumable=True,
    )
    cpu_slices: int = opt(
        "CPU: train slices of each batch in parallel threads (0: one per core; 1: off)",
        0,
        minimum=0,
        resumable=True,
    )
    fast_cpu_ops: bool = opt(
        "CPU: faster exact forms of 2x2 average pooling and 1-channel conv weight gradients", True
    )
    sync_bn: bool = opt(
        "torchrun on GPUs: BatchNorm statistics over the whole global batch (SyncBatchNorm) "
        "instead of each process's part",
        False,
        resumable=True,
    )
    dist_timeout: int = opt(
        "torchrun: seconds a process waits for the others at a collective before it stops "
        "with an error",
        300,
        minimum=1,
        resumable=True,
    )
    channels_last: bool = opt(
        "NHWC memory format (CUDA with tensor cores; on the CPU too for small convs: mnist-fast "
        "1.2x)",
        False,
    )
    amp: bool = opt("bf16 autocast on CUDA", False)
    compile: bool = opt(
        "torch.compile the model (slow to start, can be faster on GPU; on a 2-core CPU "
        "fashion-mnist-fast compiled ran 0.85x as fast, after a minute of compiling)",
        False,
    )

    # --- what it leaves behind ---
    out_dir: str = opt("parent folder of run directories", "runs")
    name: str | None = opt("run directory name (default: model-dataset-timestamp)", None)
    overwrite: bool = opt("replace an existing run directory of the same name", False)
    eval_every: int = opt(
        "evaluate on the validation and test splits every N epochs (and after the last)",
        1,
        minimum=1,
        resumable=True,
    )
    eval_test: bool = opt(
        "evaluate the test split with the validation split (--no-eval-test: leave it alone "
        "while training, as a sweep's trials do, and measure it once, for the chosen model)",
        True,
        resumable=True,
    )
    log_every: int = opt(
        "log train_loss to TensorBoard every N steps", 100, minimum=1, resumable=True
    )
    checkpoint_every: int = opt(
        "also save last.pt every N steps (0: at epoch ends only)", 0, minimum=0, resumable=True
    )
    tensorboard: bool = opt("write TensorBoard event files", True, resumable=True)
    report: bool = opt(
        "write report.html (plots, model summary, metrics) when the run ends", True,
        resumable=True,
    )  # fmt: skip
    progress: str = opt(
        "auto: a bar on a terminal, live curves in a Jupyter notebook, else a line per epoch",
        "auto",
        choices=PROGRESS,
        resumable=True,
    )

    def validate(self) -> TrainConfig:
        """Check every value; raise ConfigError with one line naming the field. An unset lr
        becomes the optimizer's DEFAULT_LR."""
        super().validate()
        if self.lr == "find":  # TrainConfig(lr="find"): the spelling of `--lr find`
            self.lr, self.lr_find = None, True
        if self.lr is None:  # filled in here, so config.json records the rate that ran
            self.lr = DEFAULT_LR[self.optimizer]
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise FieldError("lr", "{lr} must be a positive number, got {got}", self.lr)
        self.check_range_test()
        if not 0 <= self.label_smoothing < 1:
            raise FieldError(
                "label_smoothing", "{label_smoothing} must be in [0, 1), got {got}",
                self.label_smoothing,
            )  # fmt: skip
        for share in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, share) < 1:
                message = f"{{{share}}} must be in [0, 1), got {{got}}"
                raise FieldError(share, message, getattr(self, share))
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise FieldError(
                "target_accuracy", "{target_accuracy} must be in (0, 1], got {got}",
                self.target_accuracy,
            )  # fmt: skip
        if self.jpeg_quality > 100:
            raise FieldError(
                "jpeg_quality",
                "{jpeg_quality} must be in 1..100 (0: off), got {got}",
                self.jpeg_quality,
            )
        if not (self.whiten_eps > 0 and math.isfinite(self.whiten_eps)):
            raise FieldError(
                "whiten_eps", "{whiten_eps} must be a positive number, got {got}", self.whiten_eps
            )
        self.check_fast_settings()
        if self.tta_translate and not self.tta:
            raise FieldError("tta_translate", "{tta_translate} needs {tta} (the mirror views)")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise FieldError(
                "nesterov", "{nesterov} needs {momentum} > 0 and {dampening} 0; set {momentum} 0.9"
            )
        if self.name is not None and (not self.name or "/" in self.name or self.name in ".."):
            raise FieldError("name", "{name} must be a plain folder name, got {got!r}", self.name)
        if self.unfreeze_epoch is not None and not self.freeze_backbone:
            raise FieldError(
                "unfreeze_epoch", "{unfreeze_epoch} needs {freeze_backbone} (nothing is frozen)"
            )
        if not (0 < self.backbone_lr_scale <= 1 and math.isfinite(self.backbone_lr_scale)):
            raise FieldError(
                "backbone_lr_scale",
                "{backbone_lr_scale} must be in (0, 1], got {got}; use {freeze_backbone} to stop "
                "the backbone learning",
                self.backbone_lr_scale,
            )
        if self.pretrained and self.weights_file:
            raise FieldError("weights_file", "give {pretrained} or {weights_file}, not both")
        if not self.eval_test and self.val_fraction == 0:
            raise FieldError(
                "eval_test", "{eval_test} false needs a validation split to choose best.pt; set "
                "{val_fraction} above 0",
            )  # fmt: skip
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config"):
        """Config.from_dict, reading `lr = "find"` (`--lr find`) as `lr_find = true`."""
        return super().from_dict(spell_lr_find(values), source)

    def check_fast_settings(self) -> None:
        """The settings of airbench's methods (see docs/GUIDE.md, "Training fast")."""
        shares = (("lr_start_factor", False), ("warmup_fraction", True), ("lr_end_factor", False))
        for name, below_one in shares:
            value = getattr(self, name)
            if not (0 <= value < 1 if below_one else 0 <= value <= 1):
                interval = "[0, 1)" if below_one else "[0, 1]"
                raise FieldError(name, f"{{{name}}} must be in {interval}, got {{got}}", value)
        for name in ("mixup", "cutmix"):
            if not math.isfinite(getattr(self, name)):
                message = f"{{{name}}} must be a finite number (0: off), got {{got}}"
                raise FieldError(name, message, getattr(self, name))
        if not 0 <= self.lookahead_decay < 1:
            raise FieldError(
                "lookahead_decay", "{lookahead_decay} must be in [0, 1) (0: off), got {got}",
                self.lookahead_decay,
            )  # fmt: skip
        if not (self.bn_bias_lr_scale > 0 and math.isfinite(self.bn_bias_lr_scale)):
            raise FieldError(
                "bn_bias_lr_scale", "{bn_bias_lr_scale} must be a positive number, got {got}",
                self.bn_bias_lr_scale,
            )  # fmt: skip
        fine_tuning = self.freeze_backbone or self.backbone_lr_scale != 1
        if self.bn_bias_lr_scale != 1 and (fine_tuning or self.optimizer == "lbfgs"):
            raise FieldError(
                "bn_bias_lr_scale", "{bn_bias_lr_scale} takes a parameter group of its own: "
                "not with {freeze_backbone}, {backbone_lr_scale} or lbfgs",
            )  # fmt: skip
        if self.bn_momentum is not None and not 0 <= self.bn_momentum <= 1:
            raise FieldError(
                "bn_momentum", "{bn_momentum} must be in [0, 1], got {got}", self.bn_momentum
            )
        if self.max_grad_norm is not None and not (
            self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)
        ):
            raise FieldError(
                "max_grad_norm", "{max_grad_norm} must be a positive number, got {got}",
                self.max_grad_norm,
            )  # fmt: skip
        if self.optimizer == "lbfgs" and self.accumulate_batches > 1:
            raise FieldError(
                "accumulate_batches",
                "{accumulate_batches} cannot add batches up for lbfgs (its line search "
                "evaluates each batch again); use 1 or choose another {optimizer}",
            )
        if self.lr_batch_size is not None and self.lr_find:
            raise FieldError(
                "lr_batch_size", "{lr_batch_size} scales a given rate; {lr_find} finds the "
                "rate for this batch size, so give one of them",
            )  # fmt: skip

    def check_range_test(self) -> None:
        """The learning-rate finder's settings (checked whether or not it runs, so a recipe's
        mistake shows at once)."""
        if not (self.start_lr > 0 and math.isfinite(self.start_lr)):
            raise FieldError(
                "start_lr", "{start_lr} must be a positive number, got {got}", self.start_lr
            )
        if not (self.end_lr > self.start_lr and math.isfinite(self.end_lr)):
            raise FieldError(
                "end_lr", f"{{end_lr}} must be above {{start_lr}} ({self.start_lr:g}), got {{got}}",
                self.end_lr,
            )  # fmt: skip
        # where the finder runs: `cnnlab lr-find` always, `cnnlab train` with --lr find
        if self.lr_find or self.command == "lr-find":
            self.check_finder_optimizer()

    def check_finder_optimizer(self) -> None:
        """Refuse lbfgs to the learning-rate finder: its line search sizes each step, so the
        rates the test sets say nothing. Worded for `--lr find` in a run (whose way out is
        giving the rate), else for the finder itself (`cnnlab lr-find`, cnnlab.lr_find)."""
        if self.optimizer != "lbfgs":
            return
        why = "cannot test lbfgs (its line search sizes each step); choose another {optimizer}"
        if self.lr_find and self.command == "train":
            raise FieldError("lr_find", f"{{lr_find}} {why}, or give {{lr}}")
        raise FieldError("optimizer", f"the learning-rate finder {why}")


def spell_lr_find(values: dict[str, Any]) -> dict[str, Any]:
    """`lr = "find"` (a recipe's, a flag's, a Python keyword's) is `lr_find = true`; the lr
    is left out, for the finder to set."""
    if values.get("lr") != "find":
        return values
    return {**{key: value for key, value in values.items() if key != "lr"}, "lr_find": True}


@dataclass
class LrFindConfig(TrainConfig):
    """`cnnlab lr-find`: the learning-rate range test of a training config (every `cnnlab
    train` flag and recipe key; start_lr, end_lr and lr_find_steps shape the test; lr itself
    is not used) and the folder its plot goes to."""

    command = "lr-find"

    out: str = opt(
        "folder for lr_find.png (loss against rate, the suggestion marked) and lr_find.json "
        "(the curve and the suggestion)",
        "lr-find",
    )


@dataclass
class EvalConfig(Config):
    """`cnnlab eval CHECKPOINT`: a saved model's loss and accuracy on a test (or train) split."""

    command = "eval"

    checkpoint: str | None = opt("a .pt checkpoint or a run folder", None, argument=True)
    dataset: str | None = opt(_dataset_help(" (default: the one it was trained on)"), None)
    split: str = opt(
        "test; train: the finished model over the images it trained on (seed 000's train "
        "accuracy); val: the validation split it held out",
        "test", choices=("test", "train", "val"),
    )  # fmt: skip
    data_dir: str | None = _data_dir_opt()
    device: str = _device_opt()
    batch_size: int = opt("evaluation batch size", EVAL_BATCH_SIZE, minimum=1)
    tta: bool | None = opt(
        "score each image by the mean logits of it and its mirror (default: as it was trained)",
        None,
    )

    def validate(self) -> EvalConfig:
        super().validate()
        if not self.checkpoint:
            raise ConfigError("give a checkpoint: a .pt file or a run folder")
        return self


@dataclass
class ModelsConfig(Config):
    """`cnnlab models [PATTERN]`: the model registry as a table."""

    command = "models"

    pattern: str = opt("shell-style filter, like 'net*' or 'tv_*'", "*", argument=True)


@dataclass
class RecipesConfig(Config):
    """`cnnlab recipes [PATTERN]`: the recipes shipped with cnnlab, each with its purpose."""

    command = "recipes"

    pattern: str = opt("shell-style filter, like 'cifar2-*' or '*modern'", "*", argument=True)


@dataclass
class DatasetsConfig(Config):
    """`cnnlab datasets`: the built-in data sets and where each is found."""

    command = "datasets"

    data_dir: str | None = _data_dir_opt()


@dataclass
class SummaryConfig(Config):
    """`cnnlab summary MODEL`: each layer's output shape, parameters, multiply-adds and
    receptive field."""

    command = "summary"

    model: str | None = opt("a model name, a .pt checkpoint or a run folder", None, argument=True)
    input: str | None = opt(
        "input as CxHxW, like 3x64x64 (default: the model's, or the size it was trained at)",
        None,
    )
    batch: int = opt("batch size of the input: shapes and activation memory", 1, minimum=1)
    depth: int = opt("show modules nested up to this depth", 3, minimum=0)
    model_args: dict[str, Any] = opt("a model name's builder arguments, n_chans1=32", factory=dict)


@dataclass
class ConvcalcConfig(Config):
    """`cnnlab convcalc`: the output size of one conv or pool, or of a chain of them."""

    command = "convcalc"

    size: str | None = opt("input side, 32, or HxW like 28x32", None)
    kernel: str | None = opt("kernel side, 3, or HxW like 3x5", None)
    stride: str | None = opt("stride (default: 1 for conv, the kernel for pools)", None)
    padding: str = opt("padding, 1, HxW, or same (conv, stride 1)", "0")
    dilation: str = opt("spacing between kernel taps", "1")
    op: str = opt("the layer", "conv", choices=("conv", "maxpool", "avgpool"))
    ceil: bool = opt("pools: ceil instead of floor (PyTorch's ceil_mode)", False)
    chain: str | None = opt(
        "layers in order, like conv5p2,pool2,conv5,pool2, or a model name: size, jump and "
        "receptive field after each",
        None,
    )


@dataclass
class ParamsConfig(Config):
    """`cnnlab params`: the weights of a convolution vs a fully connected layer."""

    command = "params"

    in_shape: str = opt("input as CxHxW", "3x32x32", flag="--in")
    out_channels: int = opt("output channels of the convolution", 16, minimum=1)
    kernel: str = opt("kernel side, 3, or HxW", "3")
    stride: int = opt("stride of the convolution", 1, minimum=1)
    padding: str = opt("padding of the convolution, or same", "same")


@dataclass
class FeaturesConfig(Config):
    """`cnnlab features RUN`: the first conv layer's filters and one image's feature maps."""

    command = "features"

    checkpoint: str | None = opt("a run folder or a .pt checkpoint", None, argument=True)
    image: str | None = opt("an image file to look at (default: a test image, --index)", None)
    index: int = opt("which image of the run's test split", 0, minimum=0)
    out: str | None = opt("folder for the PNG files (default: RUN/features)", None)
    dataset: str | None = opt(_dataset_help(" (default: the one it was trained on)"), None)
    data_dir: str | None = _data_dir_opt()
    device: str = _device_opt()


TOP_LOSSES = 16  # the mistakes a run keeps the pixels of (report/predictions), explain --count


@dataclass
class ExplainConfig(Config):
    """`cnnlab explain RUN [IMAGE...]`: where a trained model looked as it decided (Grad-CAM
    and saliency); the run and the image files are the command's leading arguments."""

    command = "explain"

    index: list[int] | None = opt(
        "test images to explain (default: the model's most confident mistakes, --count)", None
    )
    count: int = opt(f"how many mistakes, when no IMAGE or --index is given (1-{TOP_LOSSES})",
                     8, minimum=1)  # fmt: skip
    target: str | None = opt(
        "the class to explain, a name or a number (default: each image's predicted class)", None
    )
    layer: str | None = opt(
        "the module whose output Grad-CAM weighs (default: the last conv layer called)", None
    )
    out: str | None = opt("folder for the PNG files (default: RUN/explain)", None)
    dataset: str | None = opt(_dataset_help(" (default: the one it was trained on)"), None)
    data_dir: str | None = _data_dir_opt()
    device: str = _device_opt()

    def validate(self) -> ExplainConfig:
        super().validate()
        if self.count > TOP_LOSSES:
            raise ConfigError(
                f"count must be at most {TOP_LOSSES} (the mistakes a run keeps), got "
                f"{self.count}; give --index for other test images"
            )
        if self.index is not None:
            if any(i < 0 or i != int(i) for i in self.index):
                raise ConfigError(f"index must be whole numbers from 0, got {self.index}")
            self.index = [int(i) for i in self.index]  # the command line reads numbers
        return self


@dataclass
class PlotConfig(Config):
    """`cnnlab plot RUN`: a run's curves, predictions, confusion matrix and filters as PNGs."""

    command = "plot"

    run: str | None = opt("a run folder", None, argument=True)
    out: str | None = opt("folder for the PNG files (default: RUN/plots)", None)
    data_dir: str | None = _data_dir_opt()
    device: str = _device_opt()


@dataclass
class ReportConfig(Config):
    """`cnnlab report RUN`: one self-contained HTML page about a run."""

    command = "report"

    run: str | None = opt("a run folder", None, argument=True)
    out: str | None = opt("the HTML file to write (default: RUN/report.html)", None)
    data_dir: str | None = _data_dir_opt()
    device: str = _device_opt()


@dataclass
class CompareConfig(Config):
    """`cnnlab compare RUN...`: runs side by side; runs that differ only in seed are one row."""

    command = "compare"

    html: str | None = opt("also write the table and curves as a self-contained HTML page", None)
    out: str | None = opt("also write the overlaid curves as PNG files in this folder", None)


@dataclass
class PredictConfig(Config):
    """`cnnlab predict MODEL_FILE INPUT...`: the top classes of image files (the model file
    and the inputs are the command's leading arguments, cli/predict.py)."""

    command = "predict"

    top_k: int = opt("how many classes to show per image", 3, minimum=1)
    csv: str | None = opt("also write every image's row to this CSV file", None)
    batch_size: int = opt("images per forward pass", 256, minimum=1)
    device: str = _device_opt()


EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")


@dataclass
class ExportConfig(Config):
    """`cnnlab export CHECKPOINT --format F`: a trained model as a file to deploy."""

    command = "export"

    checkpoint: str | None = opt("a run folder (its best.pt) or a .pt checkpoint", None,
                                 argument=True)  # fmt: skip
    format: str = opt("the file format", "onnx", choices=EXPORT_FORMATS)
    out: str | None = opt("the file to write (default: beside the checkpoint, best.onnx ...)", None)
    data_dir: str | None = _data_dir_opt()


@dataclass
class SweepConfig(Config):
    """`cnnlab sweep SPACE.toml`: a search over TrainConfig settings on Optuna (sweeps/)."""

    command = "sweep"

    space: str | None = opt("the search space: a TOML file with [search] and [study] tables",
                            None, argument=True)  # fmt: skip
    trials: int | None = opt(
        "how many trials the study ends with, in all (default: [study] trials, else 20)",
        None, minimum=1,
    )  # fmt: skip
    workers: int = opt("trials run at once on this machine, each on its share of the cores",
                       1, minimum=1)  # fmt: skip
    out_dir: str = opt("parent folder of the sweep folder", "runs")
    name: str | None = opt("the sweep folder's name (default: the SPACE file's name)", None)
    storage: str | None = opt(
        "the study's database, shared by workers on several machines, like "
        "postgresql://user@host/db (default: SQLite in the sweep folder)", None,
    )  # fmt: skip
    report: bool = opt("write each trial's report.html", True)

    def validate(self) -> SweepConfig:
        super().validate()
        if self.name is not None and (not self.name or "/" in self.name or self.name in ".."):
            raise FieldError("name", "{name} must be a plain folder name, got {got!r}", self.name)
        return self


def check_weights_file(cfg: TrainConfig) -> None:
    """A new run's --weights-file must be a file (not part of validate: a resumed run's
    weights come from last.pt, and the file may be gone by then)."""
    if cfg.weights_file is not None and not Path(cfg.weights_file).is_file():
        raise FieldError(
            "weights_file",
            "{weights_file} {got} is not a file; give the path of a state dict saved as .pth, "
            ".pt or .safetensors",
            cfg.weights_file,
        )


def saved_train_values(values: dict[str, Any]) -> dict[str, Any]:
    """A run's saved TrainConfig values in today's fields: a run saved before validation
    splits existed (it has no test_fraction) called the folder test share val_fraction and
    held nothing out."""
    if "test_fraction" in values:
        return values
    old_share = values.get("val_fraction", TrainConfig.test_fraction)
    return {**values, "test_fraction": old_share, "val_fraction": 0.0}


def resumable_fields() -> set[str]:
    """The TrainConfig fields a resumed run may change (see `opt(resumable=...)`)."""
    return {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"]}


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe: top-level keys, or a `[train]` table, named like TrainConfig fields.
    `path` is a TOML file, or the name of a recipe shipped with cnnlab (`lenet-fashion-mnist`,
    with or without .toml; `cnnlab recipes` lists them): see config/recipes.py."""
    from cnnlab.config.recipes import find_recipe

    path = find_recipe(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"recipe {path} cannot be read: {err}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"recipe {path} is not valid TOML: {err}") from None
    values = dict(values.pop("train", {}), **values)
    TrainConfig.from_dict(values, source=str(path))  # fail early, with the file's name
    return values
