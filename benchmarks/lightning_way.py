"""The seeds' models, optimizers and DataLoaders trained by PyTorch Lightning, for bench.py.

    python benchmarks/lightning_way.py --task lenet --epochs 2 --device cpu \
        --data-root DIR --result result.json

Everything the model sees comes from seed_way.py's Setup (same net, init, SGD settings and
DataLoaders); Lightning owns the loop, with validation on the test loader after every epoch and
its own defaults otherwise (the two-batch sanity validation included: a user gets it too).
Writes the same result JSON as seed_way.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

from seed_way import SETUPS, OptimizerFactory, sync


class SeedModule(L.LightningModule):
    """A seed's net and optimizer; counts correct test predictions for the final accuracy."""

    def __init__(self, net: nn.Module, make_optimizer: OptimizerFactory):
        super().__init__()
        self.net = net
        self.make_optimizer = make_optimizer
        self.loss_fn = nn.CrossEntropyLoss()
        self.correct, self.seen = 0, 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self.net(x), y)

    def on_validation_epoch_start(self):
        self.correct, self.seen = 0, 0  # the sanity check's counts are dropped here

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.correct += int((self.net(x).argmax(1) == y).sum())
        self.seen += y.numel()

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


class TrainLoopTimer(L.Callback):
    """Wall time from each training epoch's start to its validation: batch waits included,
    evaluation left out, as bench.py measures every way."""

    def __init__(self):
        self.seconds = 0.0
        self._start: float | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_validation_epoch_start(self, trainer, pl_module):
        self._stop(pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._stop(pl_module)  # only counts when no validation ran this epoch

    def _stop(self, pl_module):
        if self._start is not None:
            sync(pl_module.device)
            self.seconds += time.perf_counter() - self._start
            self._start = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(SETUPS), required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    setup = SETUPS[args.task](args.data_root)
    if setup.init is not None:
        setup.net.apply(setup.init)
    module, timer = SeedModule(setup.net, setup.make_optimizer), TrainLoopTimer()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="gpu" if torch.device(args.device).type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, setup.train_loader, setup.test_loader)
    result = {
        "test_accuracy": module.correct / module.seen,
        "train_seconds": timer.seconds,
        "epochs": args.epochs,
        "train_samples": len(setup.train_loader.dataset),
    }
    print(f"test accuracy {result['test_accuracy']:.4f}")
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
