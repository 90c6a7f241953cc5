"""Evaluating a saved model on a data set (`cnnlab eval`), and its predictions one by one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import EvalConfig, TrainConfig, saved_train_values
from cnnlab.config.fields import FieldError
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.process import startup_finished
from cnnlab.training.checkpoint import load_checkpoint, rebuild_model
from cnnlab.training.device import resolve_device
from cnnlab.training.loop import EvalResult, evaluate, scored_logits
from cnnlab.training.optim import make_loss


def evaluate_checkpoint(
    checkpoint: str | Path | EvalConfig, *, test_data: Any = None, **options: Any
) -> tuple[EvalResult, list[str]]:
    """Loss, accuracy and per-class accuracy of a checkpoint on a test split (or `split="train"`:
    the training images, in eval mode, unaugmented); `.exact` the same over the split's exact
    images alone, where its data set marks some images exact and others not (test.npz's `exact`).

    `evaluate_checkpoint("runs/x/best.pt", dataset=..., device=..., batch_size=...)` or
    `evaluate_checkpoint(EvalConfig(...))`; the options and their defaults are EvalConfig's.
    The checkpoint loads onto whatever device is here (a GPU checkpoint works on a CPU-only
    machine); the data set defaults to the one it was trained on. `test_data`: your own, a
    Dataset or (images, labels), as `cnnlab.train(test_data=...)` takes it.
    """
    from cnnlab.data import make_loader
    from cnnlab.data.own import own_data

    if isinstance(checkpoint, EvalConfig):
        cfg = checkpoint
    else:
        cfg = EvalConfig.from_dict({"checkpoint": str(checkpoint), **options}, "evaluate")
    cfg.validate()
    target = resolve_device(cfg.device)
    state = load_checkpoint(cfg.checkpoint, map_location=target)
    model = rebuild_model(state, target, cfg.checkpoint)
    names = state["class_names"]
    given = None if test_data is None else own_data(None, test_data, class_names=names)
    data = load_trained_data(state, cfg.checkpoint, cfg.dataset, cfg.data_dir, given=given)
    if cfg.split == "val" and data.val is None:
        where = str(cfg.checkpoint).replace("{", "{{").replace("}", "}}")  # a template
        raise FieldError(
            "val_fraction",
            f"{where} has no validation split to evaluate: it trained with {{val_fraction}} "
            f"0{'' if cfg.dataset is None else ', or on another data set'}; use the test or "
            "train split",
        )
    loader = make_loader(data, cfg.split, batch_size=cfg.batch_size, device=target)
    startup_finished()
    trained_with = TrainConfig.from_dict(saved_train_values(state["config"]))
    loss_fn = make_loss(trained_with, data.num_classes, target)
    tta = trained_with.tta if cfg.tta is None else cfg.tta
    translate = trained_with.tta_translate if tta else 0
    result = evaluate(model, loader, loss_fn, data.num_classes, tta=tta, translate=translate)
    part = getattr(data, cfg.split)
    marks = getattr(part, "exact", None)  # a folder's Dataset has none
    if marks is not None and 0 < int(marks.sum()) < len(marks):
        exact = dataclasses.replace(data, test=part.subset(marks))
        loader = make_loader(exact, "test", batch_size=cfg.batch_size, device=target)
        result.exact = evaluate(
            model, loader, loss_fn, data.num_classes, tta=tta, translate=translate
        )
    return result, list(data.class_names)


def load_trained_data(
    state: dict[str, Any],
    checkpoint: str | Path,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    *,
    same_classes: bool = True,
    given: Any = None,
):
    """The data set a checkpoint was trained on (or `dataset`), split, resized and scaled as
    it was trained: the test split is the one its test accuracy was measured on, the
    validation split (if it held one out) the one that chose it, and train the rest. It is looked
    for in `data_dir`, else in the run's own --data-dir, then where data sets always are.

    The images are scaled by the checkpoint's mean/std (what the model was trained on), not
    by the data's, so those are not computed. A data set of another image shape, or (when
    `same_classes`) another number of classes, is a CheckpointError.
    """
    from cnnlab.data import load_dataset
    from cnnlab.data.holdout import with_validation

    trained = saved_train_values(state.get("config") or {})
    if given is not None:  # given in Python: scaled as trained, like the data read here
        data = dataclasses.replace(given, mean=tuple(state["mean"]), std=tuple(state["std"]))
        return _check_fits(data, state, checkpoint, same_classes)
    data = load_dataset(
        dataset or state["dataset"], data_dir or trained.get("data_dir"),
        image_size=trained.get("image_size"),
        test_fraction=trained.get("test_fraction", TrainConfig.test_fraction),
        seed=trained.get("seed", TrainConfig.seed), normalize=False,
    )  # fmt: skip
    if data.name == state["dataset"]:  # the run's own data: split as it was
        data = with_validation(data, trained.get("val_fraction", 0.0), trained.get("seed", 0))
    data.mean, data.std = tuple(state["mean"]), tuple(state["std"])
    return _check_fits(data, state, checkpoint, same_classes)


def _check_fits(data: Any, state: dict[str, Any], checkpoint: str | Path, same_classes: bool):
    saved_shape = tuple(state["input_shape"])
    other_classes = same_classes and data.num_classes != len(state["class_names"])
    if other_classes or tuple(data.input_shape) != saved_shape:
        raise CheckpointError(
            f"{checkpoint} is a {state['model_name']} for {len(state['class_names'])} classes "
            f"at {'×'.join(map(str, saved_shape))}; {data.name} has {data.num_classes} classes "
            f"at {'×'.join(map(str, data.input_shape))}"
        )
    return data


@torch.inference_mode()
def predict(
    model: nn.Module, loader: Any, tta: bool = False, translate: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities (N, K) float32, labels (N,) int64) over `loader`, on the CPU;
    `tta` and `translate`: of the mean logits of the test-time views, as `evaluate` scores
    them."""
    model.eval()
    probs, labels = [], []
    for images, batch_labels in loader:
        logits = scored_logits(model, images, tta, translate)
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
        labels.append(batch_labels.cpu())
    if not probs:
        raise CnnlabError("the evaluation split is empty; give a data set with test images")
    return torch.cat(probs), torch.cat(labels)
