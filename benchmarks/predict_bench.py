"""`cnnlab predict` on a folder of 10,000 small images, against what it cannot avoid doing.

    python benchmarks/predict_bench.py                          # a fresh LeNet, no training
    python benchmarks/predict_bench.py --run runs/lenet-fashion-mnist-20261129-100816
    python benchmarks/predict_bench.py --images 2000 --repeat 5 --device cpu

It writes N 28×28 grayscale PNGs to a temporary folder (Fashion-MNIST's test images when the
IDX file is found, in $CNNLAB_DATA/fashion-mnist/ or Debian's /usr/share/datasets/, else
random pixels) and times, side by side in one run, each best of --repeat:

  (a) decode: read_image over every file, in the same thread pool Predictor uses
  (b) model:  the model on the same N images already in memory, batch by batch (normalise,
              forward, softmax): what evaluating that many images costs
  (c) predict: Predictor.predict on the folder, end to end (finding the files, decoding,
              the model, the top-k rows)

and the ratios c / (a + b) and c / (a + b'), b' being the model with the intra-op threads
predict leaves it beside the decoding. The target (issue 12): predicting a folder costs no
more than evaluating as many images plus decoding them, a ratio of at most 1.0. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.images import read_image
from cnnlab.deploy.predictor import MODEL_THREADS, Predictor, decode_ahead, decode_threads

FASHION_DIRS = [
    Path("/usr/share/datasets/fashion-mnist"),
    Path("/usr/local/share/datasets/fashion-mnist"),
]
IDX_NAME = "t10k-images-idx3-ubyte.gz"


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnlab-predict-bench-") as tmp:
        folder = Path(tmp) / "images"
        source = write_pngs(folder, args.images)
        model_file = Path(args.run) if args.run else write_lenet(Path(tmp) / "lenet.pt")
        predictor = Predictor(model_file, device=args.device, batch_size=args.batch_size)
        print(describe(args, source, model_file, predictor))
        times, threads_beside = measure(predictor, folder, args.repeat)
    print_table(times, args.images, threads_beside)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run folder or model file (default: a fresh LeNet)")
    parser.add_argument("--images", type=int, default=10_000, help="how many PNGs [10000]")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts [3]")
    parser.add_argument("--batch-size", type=int, default=256, help="Predictor's [256]")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda ... [cpu]")
    return parser.parse_args()


def write_pngs(folder: Path, count: int) -> str:
    """`count` 28×28 grayscale PNGs in `folder` (00000.png ...); says where the pixels came from."""
    pixels, source = source_images(count)
    folder.mkdir(parents=True)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return source


def source_images(count: int) -> tuple[np.ndarray, str]:
    """Fashion-MNIST's test images (repeated past 10,000) when found, else random pixels."""
    data = os.environ.get("CNNLAB_DATA")
    folders = ([Path(data) / "fashion-mnist"] if data else []) + FASHION_DIRS
    for folder in folders:
        path = folder / IDX_NAME
        if path.is_file():
            with gzip.open(path) as f:
                images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
            return np.resize(images, (count, 28, 28)), str(path)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), "random pixels"


def write_lenet(path: Path) -> Path:
    """An untrained LeNet as a cnnlab checkpoint: the speed does not depend on the weights."""
    from cnnlab.models import create_model
    from cnnlab.training.checkpoint import FORMAT, VERSION, save_checkpoint

    model_args = {"num_classes": 10, "in_channels": 1, "image_size": [28, 28]}
    torch.manual_seed(0)
    model = create_model("lenet", **model_args)
    save_checkpoint(
        {
            "format": FORMAT, "version": VERSION, "model_name": "lenet", "model_args": model_args,
            "class_names": [f"class{i}" for i in range(10)], "mean": [0.286], "std": [0.353],
            "input_shape": [1, 28, 28], "dataset": "benchmark", "config": {},
            "model_state": model.state_dict(),
        },
        path,
    )  # fmt: skip
    return path


def measure(predictor: Predictor, folder: Path, repeat: int) -> tuple[dict[str, float], int]:
    """Best seconds of each step over `repeat` rounds, the steps interleaved in each round so
    that whatever else the machine does hits them alike; and the torch threads the model has
    beside the decoding."""
    files = sorted(str(p) for p in folder.iterdir())
    channels, height, width = predictor.input_shape
    read = partial(read_image, channels=channels, size=(height, width))
    threads = decode_threads(predictor.model.device)
    images = torch.stack(decode(files, read, threads, predictor.batch_size))
    predictor.predict(files[: predictor.batch_size])  # warm-up: first forward, plugin loading

    beside = []

    def model_beside_decoding() -> None:
        with MODEL_THREADS.beside(threads, predictor.model):
            beside.append(torch.get_num_threads())
            predictor.probabilities(images)

    steps: dict[str, Callable[[], object]] = {
        "decode": lambda: decode(files, read, threads, predictor.batch_size),
        "model": lambda: predictor.probabilities(images),
        "model_shared": model_beside_decoding,
        "predict": lambda: check_predicted(predictor.predict(folder), len(files)),
    }
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeat):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, beside[0]


def decode(
    files: list[str], read: Callable[[str], torch.Tensor], threads: int, batch_size: int
) -> list[torch.Tensor]:
    """Every file decoded as Predictor decodes them: the same pool, parts and batches."""
    with ThreadPoolExecutor(threads) as pool:
        batches = decode_ahead(pool, read, files, batch_size, threads)
        return [image for _, decoded in batches for image in decoded]


def check_predicted(result, count: int) -> None:
    if len(result.rows) != count or result.failures:
        sys.exit(f"predict gave {len(result.rows)} rows and {len(result.failures)} failures")


def describe(args: argparse.Namespace, source: str, model_file: Path, predictor: Predictor) -> str:
    model = predictor.model
    return (
        f"{args.images} PNGs 28x28 from {source}\nmodel {model_file} ({model.kind} on "
        f"{model.device}), batch {args.batch_size}, {decode_threads(model.device)} decoding "
        f"threads, torch {torch.__version__} with {torch.get_num_threads()} threads\n"
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"best of {args.repeat} rounds"
    )


def print_table(times: dict[str, float], count: int, threads_beside: int) -> None:
    labels = {
        "decode": "(a) decode only (Predictor's thread pool)",
        "model": f"(b) model, images in memory, {torch.get_num_threads()} torch threads",
        "model_shared": f"(b') the same, {threads_beside} (what predict leaves it)",
        "predict": "(c) Predictor.predict on the folder",
    }
    for name, label in labels.items():
        print(f"{label:<52} {times[name]:7.3f} s  {count / times[name]:8.0f} images/s")
    budget = times["decode"] + min(times["model"], times["model_shared"])
    label = "(a) + the faster of (b) and (b')"
    print(f"{label:<52} {budget:7.3f} s")
    print(f"c / (a + min(b, b')) = {times['predict'] / budget:.2f}  (target: at most 1.00)")
    eval_budget = times["decode"] + times["model"]
    print(f"c / (a + b)          = {times['predict'] / eval_budget:.2f}")


if __name__ == "__main__":
    main()
