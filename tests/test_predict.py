"""`cnnlab predict` and cnnlab.Predictor: right probabilities (against a computation by hand and
against the model's own evaluation), every kind of model file alike, inputs found as documented,
failures skipped with a line, one forward pass per batch, and a CSV that reads back."""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.deploy import predictor as predictor_module
from cnnlab.deploy.model_file import LoadedModel
from cnnlab.deploy.predictor import MODEL_THREADS, ModelThreads, Predictor, find_images
from cnnlab.errors import ConfigError, DataFormatError
from cnnlab.training.device import resolve_device

RGB_CLASSES = ["red", "green", "blue"]


def write_checkpoint(path: Path, name: str, **model_args) -> Path:
    """A cnnlab checkpoint of an untrained `name` (seeded weights): the few keys a model file
    needs, with a mean and std far from 0 and 1 so that a wrong normalisation shows."""
    from cnnlab.models import create_model
    from cnnlab.training.checkpoint import FORMAT, VERSION, save_checkpoint

    torch.manual_seed(1)
    model = create_model(name, **model_args)
    channels, (height, width) = model.model_args["in_channels"], model.model_args["image_size"]
    save_checkpoint(
        {
            "format": FORMAT, "version": VERSION, "model_name": name,
            "model_args": dict(model.model_args), "class_names": RGB_CLASSES,
            "mean": [0.3, 0.5, 0.7][:channels], "std": [0.2, 0.25, 0.1][:channels],
            "input_shape": [channels, height, width], "dataset": "test", "config": {},
            "model_state": model.state_dict(),
        },
        path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory) -> Path:
    """A 3-channel model for 24 high × 16 wide images (not square: H and W must not swap)."""
    folder = tmp_path_factory.mktemp("rgb")
    return write_checkpoint(folder / "net.pt", "net", num_classes=3, image_size=(24, 16))


def by_hand(path: Path, model_file: Path) -> np.ndarray:
    """Class probabilities computed without cnnlab's image code: PIL to convert and resize,
    numpy to scale and normalise, the model rebuilt from the checkpoint's own keys."""
    state = torch.load(model_file, weights_only=True)
    channels, height, width = state["input_shape"]
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float64).reshape(height, width, channels) / 255
    mean, std = np.array(state["mean"]), np.array(state["std"])
    x = ((pixels - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    model = cnnlab.create_model(state["model_name"], **state["model_args"])
    model.load_state_dict(state["model_state"])
    with torch.no_grad():
        return torch.softmax(model.eval()(torch.from_numpy(x)), dim=1)[0].numpy()


def full_probabilities(row, classes: int) -> np.ndarray:
    """A row's probabilities in class order (the row holds them best first)."""
    out = np.full(classes, np.nan)
    out[list(row.indices)] = row.probabilities
    return out


def noise(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_images(folder: Path, count: int, size: int = 28, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img{i:02d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        Image.fromarray(noise(size, size, 1, seed + i)).save(path)
    return paths


def test_other_sizes_and_modes_give_the_probabilities_computed_by_hand(
    tiny_run, rgb_model, tmp_path
):
    grey_model = tiny_run / "best.pt"
    files = {
        "rgb.png": (noise(40, 33, 3, 1), "PNG", grey_model),  # RGB into a 1-channel model
        "rgb.jpg": (noise(30, 50, 3, 2), "JPEG", grey_model),
        "grey.png": (noise(20, 20, 1, 3), "PNG", rgb_model),  # grayscale into an RGB model
        "grey.jpg": (noise(64, 48, 1, 4), "JPEG", rgb_model),
        "rgb-small.png": (noise(12, 9, 3, 5), "PNG", rgb_model),
    }
    for name, (pixels, kind, _) in files.items():
        Image.fromarray(pixels).save(tmp_path / name, kind)
    for model_file in (grey_model, rgb_model):
        names = [name for name, (*_, model) in files.items() if model == model_file]
        predictor = Predictor(model_file, device="cpu")
        result = predictor.predict([tmp_path / name for name in names], top_k=4)
        assert not result.failures
        assert [Path(row.file).name for row in result] == names
        for row in result:
            expected = by_hand(Path(row.file), model_file)
            assert np.allclose(
                full_probabilities(row, len(predictor.class_names)), expected, atol=1e-5
            )
            assert list(row.probabilities) == sorted(row.probabilities, reverse=True)
            assert row.indices[0] == int(np.argmax(expected))


def test_agrees_with_the_models_own_evaluation_on_its_test_images(tiny_run, tmp_path):
    from cnnlab.data import make_loader
    from cnnlab.training.checkpoint import load_checkpoint, rebuild_model
    from cnnlab.training.evaluation import load_trained_data, predict

    state = load_checkpoint(tiny_run / "best.pt")
    data = load_trained_data(state, tiny_run / "best.pt")
    expected, _ = predict(rebuild_model(state), make_loader(data, "test", batch_size=50))
    with np.load(state["dataset"].removeprefix("npz:") + "/test.npz") as test:
        pixels = test["x"]
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")
    result = Predictor(tiny_run, device="cpu", batch_size=50).predict(tmp_path, top_k=1)
    assert len(result.rows) == len(pixels) == len(expected) == 128
    assert [row.indices[0] for row in result] == expected.argmax(dim=1).tolist()
    top = [row.probabilities[0] for row in result]
    assert np.allclose(top, expected.max(dim=1).values.numpy(), atol=1e-6)


def test_one_forward_per_batch(tiny_run, tmp_path):
    write_images(tmp_path / "many", 11)
    predictor = Predictor(tiny_run, device="cpu", batch_size=4)
    forward, sizes, threads = predictor.model.run, [], set()

    def counted(images):
        sizes.append(len(images))
        threads.add(torch.get_num_threads())
        return forward(images)

    predictor.model.run = counted
    before = torch.get_num_threads()
    result = predictor.predict(tmp_path / "many")
    assert sizes == [4, 4, 3] and len(sizes) == math.ceil(11 / 4)
    cores = len(os.sched_getaffinity(0))  # half decode, the model gets the rest
    assert threads == {max(1, min(before, cores - max(1, min(8, cores // 2))))}
    assert torch.get_num_threads() == before
    sizes.clear()
    (tmp_path / "many" / "img05.png").write_bytes(b"not a png")  # one fewer in batch 2
    assert len(predictor.predict(tmp_path / "many").rows) == 10
    assert sizes == [4, 3, 3]
    sizes.clear()
    pixels = torch.from_numpy(np.stack([noise(28, 28, 1, i) for i in range(9)]))[:, None]
    rows = predictor.predict_images(pixels, top_k=2)
    assert sizes == [4, 4, 1] and len(rows) == 9
    first = result.rows[0]
    assert Path(first.file).name == "img00.png"
    assert predictor.predict_images(pixels[:1], top_k=3)[0].indices == first.indices
    assert np.allclose(
        predictor.predict_images(pixels[0], top_k=3)[0].probabilities, first.probabilities
    )


def test_model_threads_are_given_back_after_overlapping_calls(tiny_run):
    model = Predictor(tiny_run, device="cpu").model
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with MODEL_THREADS.beside(len(os.sched_getaffinity(0)) - 1, model):
            assert torch.get_num_threads() == 1
            with MODEL_THREADS.beside(1, model):  # a second caller, say another thread
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the first one is still predicting
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_new_model_threads_cuts_the_threads_on_its_first_call():
    # MODEL_THREADS is built when predictor.py is imported, so the test above never sees a
    # ModelThreads start: with no users yet, and a lock to count them under
    module = torch.nn.Identity()
    model = LoadedModel(Path("m.pt"), "checkpoint", {}, torch.device("cpu"), module, module)
    threads, before = ModelThreads(), torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with threads.beside(len(os.sched_getaffinity(0)) - 1, model):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_predict_keeps_every_failure_and_times_itself(tiny_run, tmp_path):
    # a failure of each batch (batch_size 2) and one of an input that names nothing: all
    # three are reported, in order, not only the last batch's
    write_images(tmp_path / "photos", 4)
    for broken in ("img01.png", "img03.png"):
        (tmp_path / "photos" / broken).write_bytes(b"not a png")
    predictor = Predictor(tiny_run, device="cpu", batch_size=2)
    start = time.perf_counter()
    result = predictor.predict([tmp_path / "gone.png", tmp_path / "photos"])
    took = time.perf_counter() - start
    assert [Path(given).name for given, _ in result.failures] == [
        "gone.png", "img01.png", "img03.png"
    ]  # fmt: skip
    assert [Path(row.file).name for row in result] == ["img00.png", "img02.png"]
    assert 0 < result.seconds <= took


def test_predict_images_names_its_rows_and_gives_three_classes_by_default(tiny_run, tmp_path):
    predictor = Predictor(tiny_run, device="cpu")  # 4 classes: the default top_k shows
    pixels = torch.from_numpy(np.stack([noise(28, 28, 1, i) for i in range(2)]))[:, None]
    rows = predictor.predict_images(pixels, names=["a.png", "b.png"])
    assert [row.file for row in rows] == ["a.png", "b.png"]
    assert [len(row.classes) for row in rows] == [3, 3]
    with pytest.raises(ConfigError, match=r"^1 names for 2 images; give one per image$"):
        predictor.predict_images(pixels, names=["a.png"])
    (batch,) = predictor.predict_files(write_images(tmp_path, 1))  # as the CLI calls it
    assert [len(row.classes) for row in batch[0]] == [3]


@pytest.mark.parametrize(
    "cores, cpu, gpu", [(1, 1, 1), (2, 1, 2), (6, 3, 6), (7, 3, 7), (20, 8, 8)]
)
def test_decoding_threads_are_half_the_cores_beside_a_cpu_model(monkeypatch, cores, cpu, gpu):
    # the CI machine has 2 cores, where most of these rules give the same number
    monkeypatch.setattr(predictor_module, "usable_cores", lambda: cores)
    assert predictor_module.decode_threads(torch.device("cpu")) == cpu
    assert predictor_module.decode_threads(torch.device("cuda")) == gpu


def test_one_rgb_image_is_a_batch_of_one(rgb_model):
    # (C, H, W) gains the batch dimension in front; with 3 channels a wrong place shows
    predictor = Predictor(rgb_model, device="cpu")
    image = torch.from_numpy(noise(24, 16, 3, 7)).permute(2, 0, 1)
    (row,) = predictor.predict_images(image)
    assert row == predictor.predict_images(image[None])[0]


@pytest.mark.parametrize("top_k", [0, 2.5, True, "3"])
def test_top_k_must_be_a_whole_number_of_at_least_1(tiny_run, top_k):
    predictor = Predictor(tiny_run, device="cpu")
    pixels = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ConfigError) as info:
        predictor.predict_images(pixels, top_k=top_k)
    assert str(info.value) == f"top_k must be a whole number of at least 1, got {top_k!r}"


def test_wrong_images_are_refused_saying_what_they_are(tiny_run):
    predictor = Predictor(tiny_run, device="cpu")
    advice = "read files with cnnlab.data.images.read_image, which converts and resizes them"
    for wrong, got in ((torch.zeros(2, 1, 28, 28), "torch.float32 (2, 1, 28, 28)"),
                       ([[0] * 28] * 28, "list")):  # fmt: skip
        expected = f"the model takes uint8 images (N, 1, 28, 28), got {got}; {advice}"
        with pytest.raises(DataFormatError) as info:
            predictor.predict_images(wrong)
        assert str(info.value) == expected


def test_a_model_of_other_channels_cannot_predict_image_files(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "two.pt", "net", num_classes=3, in_channels=2)
    predictor = Predictor(checkpoint, device="cpu")
    with pytest.raises(DataFormatError) as info:
        next(predictor.predict_files(write_images(tmp_path, 1)))
    assert str(info.value) == (
        "the model takes 2-channel images; an image file gives 1 (grayscale) or 3 (RGB), so it "
        "cannot predict image files: use predict_images"
    )


def test_a_file_that_cannot_be_opened_is_skipped_with_the_systems_reason(
    tiny_run, tmp_path, monkeypatch
):
    # read_image turns what PIL raises into DataFormatError; an OSError left (a stat refused
    # on a folder without permission, which root never meets) is skipped in words, not errno
    def refused(file, channels, size):
        raise PermissionError(13, "Permission denied", file)

    monkeypatch.setattr(predictor_module, "read_image", refused)
    (image,) = write_images(tmp_path, 1)
    result = Predictor(tiny_run, device="cpu").predict(image)
    assert result.failures == [(str(image), f"image {image} cannot be read: Permission denied")]


@pytest.mark.parametrize("batch_size", [0, 2.5, True, "3"])
def test_batch_size_must_be_a_whole_number_of_at_least_1(tiny_run, batch_size):
    with pytest.raises(ConfigError) as info:
        Predictor(tiny_run, batch_size=batch_size)
    expected = f"batch_size must be a whole number of at least 1, got {batch_size!r}"
    assert str(info.value) == expected


def test_a_predictor_takes_a_device_by_name_or_as_torch_device(tiny_run):
    assert Predictor(tiny_run).model.device == resolve_device("auto")  # the default
    one = Predictor(tiny_run, device=torch.device("cpu"), batch_size=1)  # 1 is allowed
    assert one.model.device == torch.device("cpu") and one.batch_size == 1
    assert len(one.predict_images(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_torch_device_that_is_not_there_is_named_not_blamed_on_the_file(tiny_run):
    with pytest.raises(ConfigError, match=r"^device cuda asked for, but CUDA is not available"):
        Predictor(tiny_run, device=torch.device("cuda"))


def test_decoded_images_of_the_wrong_kind_are_refused(tiny_run):
    predictor = Predictor(tiny_run, device="cpu")
    for wrong in (torch.zeros(2, 1, 28, 28), torch.zeros(2, 3, 28, 28, dtype=torch.uint8)):
        with pytest.raises(DataFormatError, match=r"uint8 images \(N, 1, 28, 28\)"):
            predictor.predict_images(wrong)


def test_every_kind_of_model_file_predicts_the_same(tiny_run, tmp_path):
    from cnnlab.deploy.export import export_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    images = write_images(tmp_path / "images", 5, size=31)
    files = [run, run / "best.pt"]
    for fmt in ("safetensors", "torchscript", "onnx"):
        files.append(export_model(run, format=fmt).path)
    assert [f.name for f in files[2:]] == ["best.safetensors", "best.torchscript.pt", "best.onnx"]
    results = [Predictor(file, device="cpu").predict(images, top_k=4) for file in files]
    reference = np.array([row.probabilities for row in results[0]])
    for file, result in zip(files, results, strict=True):
        assert [row.indices for row in result] == [row.indices for row in results[0]], file
        assert np.allclose([row.probabilities for row in result], reference, atol=1e-5), file
    expected = by_hand(images[0], run / "best.pt")
    assert np.allclose(full_probabilities(results[-1].rows[0], 4), expected, atol=1e-5)


def test_folders_and_globs_are_found_sorted_once_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("b/z.png", "b/sub/a.JPG", "a.webp", "b/notes.txt", "b/.hidden.png",
                 "b/.cache/x.png", "c/2.gif", "c/10.bmp"):  # fmt: skip
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"")
    Path("empty").mkdir()
    files, failures = find_images(
        ["b", "c/*", "./b/z.png", "b/notes.txt", "missing.png", "*.jpeg", "empty", "**/*.webp"]
    )
    assert files == ["b/sub/a.JPG", "b/z.png", "c/10.bmp", "c/2.gif", "b/notes.txt", "a.webp"]
    assert [given for given, _ in failures] == ["missing.png", "*.jpeg", "empty"]
    assert "does not exist" in failures[0][1]
    assert "nothing matches" in failures[1][1]
    assert "no image files" in failures[2][1]


def test_a_glob_matching_folders_gives_the_images_in_them(tmp_path, monkeypatch):
    # a matched folder is searched as a folder given by name is; one with no images is no
    # file, so a pattern matching only such folders is a failure
    monkeypatch.chdir(tmp_path)
    for name in ("shots/day1/a.png", "shots/day2/b.jpg", "shots/day2/notes.txt", "empty1/x.txt"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"")
    files, failures = find_images(["shots/*", "empty*"])
    assert files == ["shots/day1/a.png", "shots/day2/b.jpg"]
    assert failures == [("empty*", "the pattern empty* matches only folders without images")]


def test_cli_skips_a_broken_file_and_predicts_the_others(tiny_run, tmp_path, capsys):
    good = write_images(tmp_path / "photos", 3)
    broken = tmp_path / "photos" / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    code = main(["predict", str(tiny_run), str(tmp_path / "photos"), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.splitlines() == [
        f"skipped {broken}: is not an image file PIL can read (PNG, JPEG, BMP, GIF, TIFF, "
        "WebP, ...)"
    ]
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [str(path) for path in good]
    assert lines[-1].startswith("predicted 3 images in ") and lines[-1].endswith(", 1 skipped")


def test_cli_csv_has_every_row_and_reads_back(tiny_run, tmp_path, capsys):
    write_images(tmp_path / "photos" / "deeper", 4, seed=10)
    write_images(tmp_path / "photos", 3, seed=20)
    out_csv = tmp_path / "out.csv"
    out_csv.write_text("old")  # replaced whole
    argv = ["predict", str(tiny_run), str(tmp_path / "photos"), "--csv", str(out_csv)]
    assert main([*argv, "--top-k", "9", "--batch-size", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    with out_csv.open(newline="") as f:
        table = list(csv.reader(f))
    header, rows = table[0], table[1:]
    assert header == ["file"] + [f"{k}_{i}" for i in range(1, 5) for k in ("class", "probability")]
    expected = Predictor(tiny_run, device="cpu").predict(tmp_path / "photos", top_k=4)
    assert [row[0] for row in rows] == [row.file for row in expected] and len(rows) == 7
    for row, prediction, line in zip(rows, expected, printed, strict=False):
        assert row[1::2] == list(prediction.classes)
        assert np.allclose([float(p) for p in row[2::2]], prediction.probabilities, atol=1e-6)
        assert all(len(p.split(".")[1]) == 6 for p in row[2::2])
        assert line.split()[:2] == [row[0], row[1]]  # the printed top-1 is the CSV's
        assert abs(sum(float(p) for p in row[2::2]) - 1) < 1e-5  # all 4 classes shown
    assert printed[-1] == f"wrote 7 rows to {out_csv}"


def test_nothing_predicted_is_exit_2_and_the_csv_is_left_alone(tiny_run, tmp_path, capsys):
    out_csv = tmp_path / "out.csv"
    out_csv.write_text("kept")
    (tmp_path / "notes.txt").write_text("text")
    argv = ["predict", str(tiny_run), str(tmp_path / "notes.txt"), str(tmp_path / "nope.png")]
    assert main([*argv, "--csv", str(out_csv)]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 3
    assert lines[0].startswith(f"skipped {tmp_path / 'nope.png'}: does not exist")
    assert lines[1].startswith(f"skipped {tmp_path / 'notes.txt'}: is not an image file")
    assert lines[2].startswith("error: nothing could be predicted: all 2 inputs above")
    assert out_csv.read_text() == "kept"
