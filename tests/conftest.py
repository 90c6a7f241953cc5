"""Shared fixtures. Data: every test is cut off from the machine's real data sets, and small
fake ones are made on demand in the upstream formats, from helpers.py's learnable_images.

    isolate_data         (autouse) no test sees the machine's data: an empty cache of its own,
                         no $CNNLAB_DATA, no system folders; isolate_data_session does the same
                         for module- and session-scoped fixtures, which run before it
    fake_data_root       <root>/mnist/ and <root>/fashion-mnist/: MNIST-format IDX .gz files,
                         64 train / 32 test 28x28 images, 10 learnable classes
    fake_cifar_root      <root>/cifar-10-batches-py/: CIFAR-10 python pickles, 100 train / 40 test
    npz_root             a folder with train.npz (48) and test.npz (24): 16x16 RGB, 3 classes
    png_folder           <root>/train/<class>/*.png and <root>/test/<class>/*.png, 32x32 RGB,
                         3 classes, 8 train / 4 test images each
    npz_data             (session) "npz:<folder>" of write_learnable_npz's defaults: 384 train /
                         128 test 28x28 grey images, 4 classes; read-only, shared by all tests
    tiny_run             (session) a finished mnist_cnn run on such data, 16 confident mistakes
    tiny_run_copy        (module) a copy of it that the module's tests may write into
    tiny_report          (session) a copy of tiny_run after `cnnlab report RUN --out PAGE`
                         (its predictions.npz computed): test_report.py and
                         test_report_browser.py read the same page, drawn once

Helpers live in helpers.py and tests import them from there, never from this file
(`from helpers import write_idx`): learnable_images, write_learnable_npz, write_idx,
write_mnist_files, write_cifar_batch, write_cifar_files, collect, checksums,
relocate_checkpoint, and the constants FAKE_TRAIN, FAKE_TEST, PNG_CLASSES, NPZ_CLASSES.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from helpers import (
    NPZ_CLASSES,
    PNG_CLASSES,
    learnable_images,
    write_cifar_files,
    write_learnable_npz,
    write_mnist_files,
)

# Modules whose tests take many seconds each, run first. pytest-xdist hands each worker tests
# in collection order and never takes back what it handed out, so a long test collected last
# runs at the end on one worker while the other has nothing left: the notebooks' kernels
# (8-16 s each, test_tutorials.py, collected last) kept one worker busy for about 10 s alone.
# Run first, they overlap with the other worker's short tests. Whole modules move, so their
# module-scoped fixtures are still made once.
LONG_FIRST = ("test_tutorials.py",)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_FIRST)  # stable: the rest in order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the imports and the collection made (700k objects: torch, torch._dynamo,
    matplotlib, every test), as the `cnnlab` command does after its start-up (process.py): they
    live as long as the worker, and each full collection walked them all again (0.3-0.4 s).
    Then collect less often: a collection every 20,000 new objects, not 700, cuts a worker's
    full collections from 30-45 to 13 (0.15 s each even with the imports frozen; both workers'
    collections from 10.7 s to 4.7 s). Garbage made by the tests is still collected, a little
    later: the workers' peak memory was the same (2.6 and 1.2 GB, torch's tensors)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _cut_off_real_data(patch: pytest.MonkeyPatch, cache: Path) -> None:
    from cnnlab.data import locate

    patch.setenv("CNNLAB_CACHE", str(cache))
    patch.delenv("CNNLAB_DATA", raising=False)
    patch.setattr(locate, "SYSTEM_DATA_DIRS", [])


def _real_report():
    from cnnlab import api

    return api.report_run


REAL_REPORT = _real_report()


@pytest.fixture(scope="session", autouse=True)
def isolate_data_session(tmp_path_factory: pytest.TempPathFactory):
    """The same isolation for module- and session-scoped fixtures, which run before the
    per-test one. And no end-of-run report.html unless a test asks (`reports_on`): drawing
    its plots takes a second or two, and only test_report.py looks at it."""
    from cnnlab import api

    with pytest.MonkeyPatch.context() as patch:
        _cut_off_real_data(patch, tmp_path_factory.mktemp("cnnlab-session-cache"))
        patch.setattr(api, "report_run", lambda run_dir, cfg, data=None: None)
        yield


@pytest.fixture
def reports_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cnnlab train` writes report.html at the end of a run again (in-process runs)."""
    from cnnlab import api

    monkeypatch.setattr(api, "report_run", REAL_REPORT)


@pytest.fixture(autouse=True)
def isolate_data(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test sees the machine's data: an empty cache of its own, no $CNNLAB_DATA, and no
    system folders (cnnlab.data.locate.SYSTEM_DATA_DIRS is [])."""
    _cut_off_real_data(monkeypatch, tmp_path_factory.mktemp("cnnlab-cache"))


@pytest.fixture
def fake_data_root(tmp_path: Path) -> Path:
    """A data root with fake mnist/ and fashion-mnist/ (IDX .gz, 64 train / 32 test)."""
    root = tmp_path / "fake-data"
    write_mnist_files(root / "mnist", seed=0)
    write_mnist_files(root / "fashion-mnist", seed=10)
    return root


@pytest.fixture
def fake_cifar_root(tmp_path: Path) -> Path:
    """A data root with cifar-10-batches-py/ (100 train / 40 test, 10 per class in train)."""
    root = tmp_path / "fake-cifar"
    write_cifar_files(root / "cifar-10-batches-py")
    return root


@pytest.fixture
def npz_root(tmp_path: Path) -> Path:
    """A folder for `npz:PATH`: train.npz (48) and test.npz (24), x (N, 16, 16, 3) uint8."""
    root = tmp_path / "npz-data"
    root.mkdir()
    for name, n, seed in (("train", 48, 3), ("test", 24, 4)):
        x, y = learnable_images(n, 16, 16, channels=3, num_classes=3, seed=seed)
        np.savez(root / f"{name}.npz", x=x, y=y, class_names=np.array(NPZ_CLASSES))
    return root


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """A folder for `folder:PATH` with train/ and test/, each <class>/NNN.png (32x32 RGB)."""
    from PIL import Image

    root = tmp_path / "png-data"
    for split, per_class, seed in (("train", 8, 5), ("test", 4, 6)):
        x, y = learnable_images(per_class * 3, 32, 32, channels=3, num_classes=3, seed=seed)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / PNG_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def npz_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`npz:PATH` of write_learnable_npz's defaults (384 train / 128 test, 28x28 grey, 4
    classes). Shared by every test of the session: read it, never change it."""
    return "npz:" + str(write_learnable_npz(tmp_path_factory.mktemp("learnable")))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder: mnist_cnn, 3 epochs on write_learnable_npz data (4 classes, 128
    test images) whose every 8th test image is labelled as the next class, so the model makes
    16 confident mistakes (true k+1, predicted k). No report, no TensorBoard. Shared by every
    test of the session: copy it (shutil.copytree) before changing anything."""
    import cnnlab

    root = tmp_path_factory.mktemp("tiny_run")
    data = write_learnable_npz(root / "data")
    with np.load(data / "test.npz") as test:
        arrays = dict(test)
    arrays["y"][::8] = (arrays["y"][::8] + 1) % 4
    np.savez(data / "test.npz", **arrays)
    result = cnnlab.train(
        model="mnist_cnn", dataset=f"npz:{data}", epochs=3, batch_size=32, optimizer="adam",
        lr=3e-3, out_dir=str(root / "runs"), name="tiny", progress="none", tensorboard=False,
        report=False,
    )  # fmt: skip
    return result.run_dir


@pytest.fixture(scope="module")
def tiny_run_copy(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tiny_run for one test module, which may write into it (its predictions.npz)."""
    import shutil

    copy = tmp_path_factory.mktemp("tiny_run_copy") / "tiny"
    shutil.copytree(tiny_run, copy)
    return copy


class ReportedRun(NamedTuple):
    """tiny_report: the run folder, the page, and the exit code and output of the command."""

    run: Path
    page: Path
    code: int
    out: str
    err: str


@pytest.fixture(scope="session")
def tiny_report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportedRun:
    """A copy of tiny_run after `cnnlab report RUN --out PAGE`: predictions.npz computed into
    RUN, the page written to PAGE, the command's exit code and what it printed (drawing a page
    takes seconds: test_report.py and test_report_browser.py read this one). Shared by every
    test of the session: read it, never change it (copy RUN first)."""
    import contextlib
    import io
    import shutil

    from cnnlab.cli import main

    root = tmp_path_factory.mktemp("tiny_report")
    run, page = root / "tiny", root / "page.html"
    # without a cache of predictions, should a test have left one in tiny_run: the command
    # computes them
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("predictions.npz", "plots"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["report", str(run), "--out", str(page)])
    return ReportedRun(run, page, code, out.getvalue(), err.getvalue())
