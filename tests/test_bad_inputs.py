"""Every bad input gets one clear line, exit code 2, and leaves existing files alone.

Each row: a name, a function that builds the argv (given the fixture paths), and a piece of the
message the user must see. The test runs the CLI in-process and checks the exit code, that
stderr is exactly one line, and that every file of an existing run is byte-identical after.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from helpers import checksums, write_learnable_npz


class Evil:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    npz = write_learnable_npz(root / "npz", train=64, test=32)
    tiny = write_learnable_npz(root / "tiny", size=8, train=16, test=8)
    runs = root / "runs"
    cnnlab.train(
        model="mnist_cnn",
        dataset=f"npz:{npz}",
        epochs=1,
        batch_size=32,
        out_dir=str(runs),
        name="done",
        progress="none",
        lr=0.01,
        report=False,
    )
    ckpt = runs / "done" / "last.pt"
    shutil.copytree(runs / "done", runs / "cut")  # metrics.jsonl cut mid-row
    metrics = (runs / "cut" / "metrics.jsonl").read_bytes()
    (runs / "cut" / "metrics.jsonl").write_bytes(metrics[: len(metrics) // 2])
    shutil.copytree(runs / "done", runs / "noconfig")
    shutil.copytree(runs / "done", runs / "nockpt", ignore=shutil.ignore_patterns("*.pt"))
    (runs / "noconfig" / "config.json").unlink()
    (root / "text.pt").write_text("this is not a checkpoint")
    (root / "truncated.pt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    torch.save({"format": "cnnlab-checkpoint", "payload": Evil(root / "pwned")}, root / "evil.pt")
    torch.save({"just": torch.zeros(2)}, root / "foreign.pt")
    (root / "no_x").mkdir()
    np.savez(root / "no_x" / "train.npz", images=np.zeros((4, 8, 8), np.uint8), y=np.zeros(4))
    np.savez(root / "no_x" / "test.npz", images=np.zeros((4, 8, 8), np.uint8), y=np.zeros(4))
    (root / "no_test").mkdir()
    shutil.copy(npz / "train.npz", root / "no_test" / "train.npz")
    (root / "empty").mkdir()
    (root / "notimg" / "cat").mkdir(parents=True)
    (root / "notimg" / "cat" / "readme.txt").write_text("not an image")
    (root / "badimg" / "cat").mkdir(parents=True)
    (root / "badimg" / "cat" / "broken.png").write_bytes(b"\x89PNG garbage")
    (root / "a_file").write_text("a file where a folder should be")
    see_through = np.zeros((8, 8, 4), np.uint8)  # RGBA, every pixel transparent
    Image.fromarray(see_through).save(root / "transparent.png")  # RGBA
    (root / "bad.toml").write_text("model = [unclosed")
    (root / "unknown_key.toml").write_text('model = "lenet"\nlearning_rate = 0.1\n')
    (root / "wrong_type.toml").write_text('model = "lenet"\nlr = "fast"\n')
    (root / "wrong_type2.toml").write_text("epochs = 2.5\n")
    (root / "zero_epochs.toml").write_text("epochs = 0\n")
    return {"root": root, "npz": npz, "tiny": tiny, "runs": runs, "ckpt": ckpt}


def train(env, *args: str) -> list[str]:
    return [
        "train",
        "--dataset",
        f"npz:{env['npz']}",
        "--out-dir",
        str(env["runs"]),
        "--progress",
        "none",
        *args,
    ]


R = "root"
CASES = [
    ("unknown model", lambda e: train(e, "--model", "lenet5"), "lenet"),
    ("unknown data set", lambda e: ["train", "--dataset", "imagenet"], "imagenet"),
    (
        "misspelled data set",
        lambda e: ["train", "--dataset", "cifra"],
        "unknown data set 'cifra'; did you mean cifar2 or cifar10? use one of",
    ),
    ("misspelled prefix", lambda e: ["train", "--dataset", "nzp:x"], "did you mean npz:x?"),
    (
        "data set folder without its prefix",
        lambda e: ["train", "--dataset", str(e["npz"])],
        "; did you mean npz:",
    ),
    ("data given in Python", lambda e: train(e, "--dataset", "python:x"), "given in Python"),
    ("unknown optimizer", lambda e: train(e, "--optimizer", "adamx"), "unknown optimizer"),
    ("unknown scheduler", lambda e: train(e, "--scheduler", "exponential"), "unknown scheduler"),
    ("unknown init", lambda e: train(e, "--init", "orthogonal"), "unknown init"),
    ("unknown progress", lambda e: train(e, "--progress", "fancy"), "unknown progress"),
    (
        "model too big for input",
        lambda e: [
            "train",
            "--dataset",
            f"npz:{e['tiny']}",
            "--model",
            "lenet",
            "--out-dir",
            str(e["runs"]),
        ],
        "8",
    ),
    ("zero lr", lambda e: train(e, "--lr", "0"), "--lr must be a positive number"),
    ("negative lr", lambda e: train(e, "--lr", "-0.1"), "--lr must be a positive number"),
    ("nan lr", lambda e: train(e, "--lr", "nan"), "--lr must be a positive number"),
    ("lr neither a number nor find", lambda e: train(e, "--lr", "auto"), "a number or find"),
    (
        "lr find with lbfgs",
        lambda e: train(e, "--lr", "find", "--optimizer", "lbfgs"),
        "--lr-find cannot test lbfgs",
    ),
    (
        "lr find that learns nothing",
        lambda e: train(e, "--lr", "find", "--end-lr", "1e-5", "--lr-find-steps", "10"),
        "--lr find: no learning seen",
    ),
    (
        "lr-find out is a file",
        lambda e: ["lr-find", "--dataset", f"npz:{e['npz']}", "--out", str(e[R] / "a_file")],
        "a_file",
    ),
    ("zero epochs", lambda e: train(e, "--epochs", "0"), "--epochs must be at least 1, got 0"),
    ("zero batch size", lambda e: train(e, "--batch-size", "0"), "--batch-size must be at least 1"),
    ("negative weight decay", lambda e: train(e, "--weight-decay", "-1"), "--weight-decay must"),
    ("label smoothing 1.5", lambda e: train(e, "--label-smoothing", "1.5"), "--label-smoothing"),
    ("jpeg quality 101", lambda e: train(e, "--jpeg-quality", "101"), "--jpeg-quality must be in"),
    ("jpeg quality -5", lambda e: train(e, "--jpeg-quality", "-5"), "--jpeg-quality must be"),
    ("negative mixup", lambda e: train(e, "--mixup", "-0.2"), "--mixup must be >= 0, got -0.2"),
    ("cutmix inf", lambda e: train(e, "--cutmix", "inf"), "--cutmix must be a finite number"),
    (
        "nesterov without momentum",
        lambda e: train(e, "--nesterov"),
        "--nesterov needs --momentum > 0 and --dampening 0; set --momentum 0.9",
    ),
    ("lr not a number", lambda e: train(e, "--lr", "fast"), "--lr"),
    ("unknown flag", lambda e: train(e, "--learning-rate", "0.1"), "--learning-rate"),
    ("device that is not there", lambda e: train(e, "--device", "cuda:7"), "cuda:7"),
    ("device that does not exist", lambda e: train(e, "--device", "banana"), "unknown device"),
    (
        "class weights wrong count",
        lambda e: train(e, "--class-weights", "1,2"),
        "class_weights has 2 values",
    ),
    ("class weights not numbers", lambda e: train(e, "--class-weights", "a,b"), "numbers"),
    ("model arg without =", lambda e: train(e, "--model-arg", "n_chans1"), "KEY=VALUE"),
    (
        "model arg unknown",
        lambda e: train(e, "--model", "mnist_cnn", "--model-arg", "width=3"),
        "width",
    ),
    ("eps on sgd", lambda e: train(e, "--optimizer", "sgd", "--eps", "1e-8"), "sgd has no eps"),
    (
        "weight decay on lbfgs",
        lambda e: train(e, "--optimizer", "lbfgs", "--weight-decay", "0.1"),
        "lbfgs has no weight_decay",
    ),
    ("lbfgs without iterations", lambda e: train(e, "--lbfgs-max-iter", "0"), "--lbfgs-max-iter"),
    (
        "val fraction of 1",
        lambda e: train(e, "--val-fraction", "1"),
        "--val-fraction must be in [0, 1), got 1.0",
    ),
    (
        "test fraction of 1",
        lambda e: train(e, "--test-fraction", "1"),
        "--test-fraction must be in [0, 1), got 1.0",
    ),
    (
        "target accuracy 1.5",
        lambda e: train(e, "--target-accuracy", "1.5"),
        "--target-accuracy must be in (0, 1], got 1.5",
    ),
    ("target accuracy 0", lambda e: train(e, "--target-accuracy", "0"), "--target-accuracy must"),
    (
        "early stop patience -1",
        lambda e: train(e, "--early-stop-patience", "-1"),
        "--early-stop-patience must be >= 0, got -1",
    ),
    (
        "early stop min delta below 0",
        lambda e: train(e, "--early-stop-min-delta", "-0.01"),
        "--early-stop-min-delta must be >= 0",
    ),
    (
        "a bad value in a recipe is named as the recipe names it",
        lambda e: ["train", "--recipe", str(e[R] / "zero_epochs.toml")],
        "zero_epochs.toml: epochs must be at least 1, got 0",
    ),
    (
        "a flag over a recipe is named as the flag",
        lambda e: ["train", "--recipe", str(e[R] / "zero_epochs.toml"), "--epochs", "-1"],
        "--epochs must be at least 1, got -1",
    ),
    ("data dir missing", lambda e: train(e, "--data-dir", str(e[R] / "nope")), "--data-dir"),
    (
        "data dir a file",
        lambda e: ["eval", str(e["ckpt"]), "--data-dir", str(e[R] / "a_file")],
        "a_file is a file; give a folder holding data sets",
    ),
    ("unknown flag after the command", lambda e: ["train", "--bogus"], "cnnlab train --help"),
    ("eval without a checkpoint", lambda e: ["eval"], "checkpoint"),
    ("name with a slash", lambda e: train(e, "--name", "a/b"), "--name must be a plain folder"),
    ("existing run without overwrite", lambda e: train(e, "--name", "done"), "already exists"),
    (
        "output under a file",
        lambda e: [
            "train",
            "--dataset",
            f"npz:{e['npz']}",
            "--out-dir",
            str(e[R] / "a_file" / "runs"),
        ],
        "cannot write",
    ),
    ("missing recipe", lambda e: ["train", "--recipe", str(e[R] / "nope.toml")], "nope.toml"),
    ("recipe not TOML", lambda e: ["train", "--recipe", str(e[R] / "bad.toml")], "not valid TOML"),
    (
        "recipe unknown key",
        lambda e: ["train", "--recipe", str(e[R] / "unknown_key.toml")],
        "learning_rate",
    ),
    (
        "recipe wrong type",
        lambda e: ["train", "--recipe", str(e[R] / "wrong_type.toml")],
        "lr must be a number",
    ),
    (
        "recipe float epochs",
        lambda e: ["train", "--recipe", str(e[R] / "wrong_type2.toml")],
        "epochs must be an integer",
    ),
    (
        "recipe and resume",
        lambda e: [
            "train",
            "--recipe",
            str(e[R] / "bad.toml"),
            "--resume",
            str(e["runs"] / "done"),
        ],
        "not both",
    ),
    ("resume a missing run", lambda e: ["train", "--resume", str(e[R] / "nope")], "nope"),
    (
        "resume a checkpoint file",
        lambda e: ["train", "--resume", str(e["ckpt"])],
        "last.pt is a file; give its run folder",
    ),
    (
        "resume a folder without last.pt",
        lambda e: ["train", "--resume", str(e["runs"] / "nockpt")],
        "has no last.pt to resume from",
    ),
    (
        "resume with a bad value",
        lambda e: ["train", "--resume", str(e["runs"] / "done"), "--epochs", "0"],
        "--epochs must be at least 1, got 0",
    ),
    (
        "resume a finished run",
        lambda e: ["train", "--resume", str(e["runs"] / "done")],
        "already finished",
    ),
    (
        "resume with a conflict",
        lambda e: ["train", "--resume", str(e["runs"] / "done"), "--epochs", "3", "--lr", "0.5"],
        "conflicts",
    ),
    ("npz without x", lambda e: train(e, "--dataset", f"npz:{e[R] / 'no_x'}"), "x"),
    (
        "npz without test.npz",
        lambda e: train(e, "--dataset", f"npz:{e[R] / 'no_test'}"),
        "test.npz",
    ),
    ("npz folder missing", lambda e: train(e, "--dataset", f"npz:{e[R] / 'nowhere'}"), "nowhere"),
    ("empty image folder", lambda e: train(e, "--dataset", f"folder:{e[R] / 'empty'}"), "empty"),
    (
        "non-image file in image folder",
        lambda e: train(e, "--dataset", f"folder:{e[R] / 'notimg'}"),
        "readme.txt",
    ),
    (
        "unreadable image",
        lambda e: train(e, "--dataset", f"folder:{e[R] / 'badimg'}"),
        "broken.png",
    ),
    # --- torchrun (a plain run refuses these the same way, before any process group) ---
    ("sync-bn on the CPU", lambda e: train(e, "--sync-bn", "--device", "cpu"), "--sync-bn needs"),
    ("dist-timeout 0", lambda e: train(e, "--dist-timeout", "0"), "--dist-timeout must be"),
    ("eval missing checkpoint", lambda e: ["eval", str(e[R] / "missing.pt")], "does not exist"),
    ("eval a text file", lambda e: ["eval", str(e[R] / "text.pt")], "not a readable checkpoint"),
    (
        "eval truncated checkpoint",
        lambda e: ["eval", str(e[R] / "truncated.pt")],
        "not a readable checkpoint",
    ),
    ("eval malicious checkpoint", lambda e: ["eval", str(e[R] / "evil.pt")], "refused"),
    (
        "eval a foreign checkpoint",
        lambda e: ["eval", str(e[R] / "foreign.pt")],
        "not a cnnlab checkpoint",
    ),
    (
        "eval on data of another shape",
        lambda e: ["eval", str(e["ckpt"]), "--dataset", f"npz:{e['tiny']}"],
        "8×8",
    ),
    ("eval batch size 0", lambda e: ["eval", str(e["ckpt"]), "--batch-size", "0"], "--batch-size"),
    # --- summary ---
    ("summary unknown model", lambda e: ["summary", "lenett"], "did you mean lenet"),
    ("summary malformed input", lambda e: ["summary", "lenet", "--input", "28x28"], "CxHxW"),
    ("summary input too small", lambda e: ["summary", "lenet", "--input", "1x8x8"], "12×12"),
    (
        "summary checkpoint at a size it cannot take",
        lambda e: ["summary", str(e["ckpt"]), "--input", "1x40x40"],
        "cannot take a 1×40×40 input",
    ),
    ("summary missing checkpoint", lambda e: ["summary", str(e[R] / "gone.pt")], "does not exist"),
    ("summary a text file", lambda e: ["summary", str(e[R] / "text.pt")], "not a readable"),
    (
        "summary model args for a checkpoint",
        lambda e: ["summary", str(e["ckpt"]), "--model-arg", "n_chans1=8"],
        "--model-arg is for a model name",
    ),
    ("summary no model", lambda e: ["summary"], "required: model"),
    ("summary depth -1", lambda e: ["summary", "lenet", "--depth", "-1"], "--depth must be"),
    # --- convcalc and params ---
    ("conv output below 1", lambda e: ["convcalc", "--size", "3", "--kernel", "5"], "does not fit"),
    (
        "pool padding over half the kernel",
        lambda e: ["convcalc", "--op", "maxpool", "--size", "8", "--kernel", "3", "--padding", "2"],
        "more than half the kernel",
    ),
    (
        "convcalc stride 0",
        lambda e: ["convcalc", "--size", "8", "--kernel", "3", "--stride", "0"],
        "stride must be at least 1",
    ),
    ("malformed size", lambda e: ["convcalc", "--size", "3x", "--kernel", "3"], "--size expects"),
    ("convcalc without a kernel", lambda e: ["convcalc", "--size", "32"], "--kernel"),
    (
        "bad chain step",
        lambda e: ["convcalc", "--size", "28", "--chain", "conv5,pol2"],
        "chain step 2 'pol2' is not a layer",
    ),
    (
        "chain step too big",
        lambda e: ["convcalc", "--size", "10", "--chain", "conv5,conv5,conv5"],
        "chain step 3 (conv5)",
    ),
    (
        "ceil on a conv",
        lambda e: ["convcalc", "--size", "8", "--kernel", "3", "--ceil"],
        "ceil mode is for pools",
    ),
    (
        "same on a strided conv",
        lambda e: ["convcalc", "--size", "8", "--kernel", "3", "--stride", "2", "--padding=same"],
        "padding same needs stride 1",
    ),
    ("params malformed input", lambda e: ["params", "--in", "32x32"], "--in expects CxHxW"),
    ("params same with stride 2", lambda e: ["params", "--stride", "2"], "needs stride 1"),
    # --- explain ---
    ("explain missing run", lambda e: ["explain", str(e[R] / "none")], "does not exist"),
    ("explain a text checkpoint", lambda e: ["explain", str(e[R] / "text.pt")], "not a readable"),
    ("explain count over 16", lambda e: ["explain", str(e["ckpt"]), "--count", "17"], "at most 16"),
    ("explain count 0", lambda e: ["explain", str(e["ckpt"]), "--count", "0"], "--count"),
    ("explain index 1.5", lambda e: ["explain", str(e["ckpt"]), "--index", "1.5"], "whole numbers"),
    (
        "explain index out of range",
        lambda e: ["explain", str(e["ckpt"]), "--index", "3,32"],
        "index 32 is out of range: the test split of npz:",
    ),
    (
        "explain unknown class",
        lambda e: ["explain", str(e["ckpt"]), "--index", "0", "--target", "zebra"],
        "unknown target class 'zebra'",
    ),
    (
        "explain class number out of range",
        lambda e: ["explain", str(e["ckpt"]), "--index", "0", "--target", "4"],
        "a number from 0 to 3",
    ),
    (
        "explain unknown layer",
        lambda e: ["explain", str(e["ckpt"]), "--index", "0", "--layer", "nope"],
        "no layer named 'nope'; its conv layers are",
    ),
    (
        "explain a layer without maps",
        lambda e: ["explain", str(e["ckpt"]), "--index", "0", "--layer", "linear"],
        "not maps (N, C, h, w)",
    ),
    (
        "explain files and index",
        lambda e: ["explain", str(e["ckpt"]), str(e[R] / "transparent.png"), "--index", "1"],
        "not both",
    ),
    (
        "explain image missing",
        lambda e: ["explain", str(e["ckpt"]), str(e[R] / "missing.png")],
        "does not exist",
    ),
    (
        "explain last.pt's mistakes",
        lambda e: ["explain", str(e["ckpt"])],
        "the run's mistakes are those of its best.pt, not last.pt",
    ),
    (
        "explain out is a file",
        lambda e: ["explain", str(e["ckpt"]), "--index", "0", "--out", str(e[R] / "a_file")],
        "a_file",
    ),
    # --- features ---
    ("features missing checkpoint", lambda e: ["features", str(e[R] / "none")], "does not exist"),
    ("features a text checkpoint", lambda e: ["features", str(e[R] / "text.pt")], "not a readable"),
    (
        "features index out of range",
        lambda e: ["features", str(e["ckpt"]), "--index", "32"],
        "index 32 is out of range: the test split of npz:",
    ),
    ("features negative index", lambda e: ["features", str(e["ckpt"]), "--index", "-1"], "--index"),
    (
        "features image missing",
        lambda e: ["features", str(e["ckpt"]), "--image", str(e[R] / "missing.png")],
        "does not exist",
    ),
    (
        "features image not an image",
        lambda e: ["features", str(e["ckpt"]), "--image", str(e[R] / "bad.toml")],
        "not an image file",
    ),
    (
        "features broken image",
        lambda e: ["features", str(e["ckpt"]), "--image", str(e[R] / "badimg/cat/broken.png")],
        "broken.png",
    ),
    (
        "features image and index",
        lambda e: ["features", str(e["ckpt"]), "--image", str(e[R] / "x.png"), "--index", "1"],
        "not both",
    ),
    (
        "features image with transparency",
        lambda e: ["features", str(e["ckpt"]), "--image", str(e[R] / "transparent.png")],
        "transparent pixels",
    ),
    (
        "features out is a file",
        lambda e: ["features", str(e["ckpt"]), "--out", str(e[R] / "a_file")],
        "is a file",
    ),
    # --- plot and report ---
    ("plot a missing run", lambda e: ["plot", str(e[R] / "gone")], "does not exist"),
    (
        "plot a truncated metrics.jsonl",
        lambda e: ["plot", str(e["runs"] / "cut")],
        "is not a complete JSON row",
    ),
    ("plot a run without config", lambda e: ["plot", str(e["runs"] / "noconfig")], "no config"),
    ("plot a folder that is no run", lambda e: ["plot", str(e[R] / "empty")], "not a cnnlab run"),
    (
        "plot out is a file",
        lambda e: ["plot", str(e["runs"] / "done"), "--out", str(e[R] / "a_file")],
        "is a file",
    ),
    ("plot no run", lambda e: ["plot"], "required: run"),
    (
        "plot a run without checkpoints",
        lambda e: ["plot", str(e["runs"] / "nockpt")],
        "has no best.pt or last.pt",
    ),
    ("report a missing run", lambda e: ["report", str(e[R] / "gone")], "does not exist"),
    (
        "report a truncated metrics.jsonl",
        lambda e: ["report", str(e["runs"] / "cut")],
        "is not a complete JSON row",
    ),
    ("report a run without config", lambda e: ["report", str(e["runs"] / "noconfig")], "no config"),
    (
        "report a run without checkpoints",
        lambda e: ["report", str(e["runs"] / "nockpt")],
        "has no best.pt or last.pt",
    ),
    (
        "report out is a folder",
        lambda e: ["report", str(e["runs"] / "done"), "--out", str(e[R] / "empty")],
        "is a folder",
    ),
    (
        "report out in a missing folder",
        lambda e: ["report", str(e["runs"] / "done"), "--out", str(e[R] / "no/such/r.html")],
        "folder that does not exist",
    ),
    # --- compare ---
    ("compare a missing folder", lambda e: ["compare", str(e[R] / "nope")], "does not exist"),
    (
        "compare a truncated run",
        lambda e: ["compare", str(e["runs"] / "cut")],  # beside a good run: skipped
        "not a complete JSON row",
    ),
    (
        "compare a folder without config.json",
        lambda e: ["compare", str(e["runs"] / "noconfig")],
        "no config.json",
    ),
    ("compare without runs", lambda e: ["compare"], "RUN"),
    (
        "compare --out a file",
        lambda e: ["compare", str(e["runs"] / "done"), "--out", str(e[R] / "a_file")],
        "is a file",
    ),
    (
        "compare --html in a missing folder",
        lambda e: ["compare", str(e["runs"] / "done"), "--html", str(e[R] / "nowhere" / "c.html")],
        "does not exist",
    ),
    ("seeds not numbers", lambda e: train(e, "--seeds", "0,x"), "--seeds expects whole numbers"),
    ("seeds empty", lambda e: train(e, "--seeds", ""), "--seeds expects whole numbers"),
    ("seeds repeated", lambda e: train(e, "--seeds", "0,1,0"), "seed 0 is given twice"),
    ("seeds negative", lambda e: train(e, "--seeds=-1,2"), "0 or more"),
    ("seeds and seed", lambda e: train(e, "--seeds", "0,1", "--seed", "3"), "not both"),
    (
        "seeds and resume",
        lambda e: ["train", "--resume", str(e["runs"] / "done"), "--seeds", "0,1"],
        "--seeds or --resume",
    ),
    ("seeds with a bad lr", lambda e: train(e, "--seeds", "0,1", "--lr", "0"), "--lr must be"),
    # --- fine-tuning ---
    (
        "unfreeze epoch without freezing",
        lambda e: train(e, "--unfreeze-epoch", "2"),
        "--unfreeze-epoch needs --freeze-backbone",
    ),
    (
        "unfreeze epoch 0",
        lambda e: train(e, "--freeze-backbone", "--unfreeze-epoch=0"),
        "--unfreeze-epoch must be at least 1",
    ),
    (
        "backbone lr scale 0",
        lambda e: train(e, "--backbone-lr-scale", "0"),
        "--backbone-lr-scale must be in (0, 1]",
    ),
    (
        "backbone lr scale above 1",
        lambda e: train(e, "--backbone-lr-scale", "2"),
        "--backbone-lr-scale must be in (0, 1], got 2.0; use --freeze-backbone",
    ),
    (
        "pretrained on a seed model",
        lambda e: train(e, "--model", "lenet", "--pretrained"),
        "--pretrained and --weights-file are for tv_* models",
    ),
    (
        "weights file on a seed model",
        lambda e: train(e, "--model", "mnist_cnn", "--weights-file", str(e["ckpt"])),
        "mnist_cnn has no weights_file argument",
    ),
    (
        "pretrained and a weights file",
        lambda e: train(e, "--model", "tv_resnet18", "--pretrained", "--weights-file", "w.pth"),
        "--pretrained or --weights-file, not both",
    ),
    (
        "weights file that is not there",
        lambda e: train(e, "--model", "tv_resnet18", "--weights-file", str(e[R] / "nope.pth")),
        "nope.pth is not a file",
    ),
    (
        "lbfgs with a backbone lr scale",
        lambda e: train(e, "--optimizer", "lbfgs", "--backbone-lr-scale", "0.1"),
        "lbfgs takes one learning rate",
    ),
    (
        "resume with the backbone frozen",
        lambda e: [
            "train",
            "--resume",
            str(e["runs"] / "done"),
            "--epochs",
            "3",
            "--freeze-backbone",
        ],
        "resuming: --freeze-backbone True conflicts with the run's False",
    ),
    # --- predict ---
    (
        "predict with a missing model file",
        lambda e: ["predict", str(e[R] / "nope.pt"), str(e[R] / "transparent.png")],
        "model file",
    ),
    (
        "predict with a text file as model file",
        lambda e: ["predict", str(e[R] / "text.pt"), str(e[R] / "transparent.png")],
        "not a readable checkpoint",
    ),
    (
        "predict a file that is not an image",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "a_file")],
        "a_file is not an image file PIL can read",
    ),
    (
        "predict a broken image in a folder",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "badimg")],
        "broken.png is not an image file PIL can read",
    ),
    (
        "predict a transparent image",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "transparent.png")],
        "transparent pixels",
    ),
    (
        "predict a missing image",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "nope.png")],
        "nope.png does not exist",
    ),
    (
        "predict a glob that matches nothing",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "*.jpeg")],
        "nothing matches the pattern",
    ),
    (
        "predict a folder without images",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "notimg")],
        "holds no image files",
    ),
    (
        "predict --csv into a folder",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "badimg"), "--csv", str(e[R])],
        "is a folder",
    ),
    (
        "predict --csv in a missing folder",
        lambda e: [
            "predict",
            str(e["runs"] / "done"),
            str(e[R] / "badimg"),
            "--csv",
            str(e[R] / "nowhere" / "p.csv"),
        ],
        "in a folder that does not exist",
    ),
    (
        "predict --csv with a name too long for the file system",
        lambda e: [
            "predict",
            str(e["runs"] / "done"),
            str(e[R] / "badimg"),
            "--csv",
            str(e[R] / ("x" * 300 + ".csv")),
        ],
        "File name too long",
    ),
    (
        "predict --top-k 0",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "badimg"), "--top-k", "0"],
        "--top-k must be at least 1",
    ),
    (
        "predict --batch-size 0",
        lambda e: ["predict", str(e["runs"] / "done"), str(e[R] / "badimg"), "--batch-size", "0"],
        "--batch-size must be at least 1",
    ),
    # --- export ---
    (
        "export unknown format",
        lambda e: ["export", str(e["ckpt"]), "--format", "pt2"],
        "unknown format 'pt2'; choose one of: onnx, torchscript, safetensors",
    ),
    ("export no checkpoint", lambda e: ["export"], "required: checkpoint"),
    ("export missing checkpoint", lambda e: ["export", str(e[R] / "gone.pt")], "does not exist"),
    (
        "export a text file",
        lambda e: ["export", str(e[R] / "text.pt"), "--format", "safetensors"],
        "not a readable checkpoint",
    ),
    ("export malicious checkpoint", lambda e: ["export", str(e[R] / "evil.pt")], "refused"),
    (
        "export a run folder without checkpoints",
        lambda e: ["export", str(e["runs"] / "nockpt"), "--format", "torchscript"],
        "has no best.pt or last.pt",
    ),
    (
        "export out is a folder",
        lambda e: ["export", str(e["ckpt"]), "--out", str(e[R] / "empty")],
        "is a folder; give a file name like",
    ),
    (
        "export out in a missing folder",
        lambda e: ["export", str(e["ckpt"]), "--out", str(e[R] / "no/such/m.onnx")],
        "in a folder that does not exist",
    ),
    (
        "export out with another format's name",
        lambda e: ["export", str(e["ckpt"]), "--format=safetensors", "--out", str(e[R] / "m.onnx")],
        "must end in .safetensors",
    ),
]


@pytest.mark.parametrize("make_argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_exit_2_and_changes_nothing(env, make_argv, expected, capsys):
    before = checksums(env["root"])
    code = main(make_argv(env))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert checksums(env["root"]) == before
    assert not (env["root"] / "pwned").exists()


API_CASES = [
    (lambda e: cnnlab.train(model="nope", dataset=f"npz:{e['npz']}"), ValueError),
    (lambda e: cnnlab.train(dataset="npz:/no/such/folder"), FileNotFoundError),
    (lambda e: cnnlab.train(lr=-1.0), ValueError),
    (lambda e: cnnlab.lr_find(dataset=f"npz:{e['npz']}", end_lr=1e-7), ValueError),
    (lambda e: cnnlab.lr_find(dataset=f"npz:{e['npz']}", optimizer="lbfgs", lr="find"), ValueError),
    (lambda e: cnnlab.train(learning_rate=0.1), ValueError),
    (lambda e: cnnlab.load_checkpoint(e[R] / "evil.pt"), ValueError),
    (lambda e: cnnlab.load_checkpoint(e[R] / "missing.pt"), ValueError),
    (lambda e: cnnlab.load_dataset("folder:" + str(e[R] / "empty")), ValueError),
    (lambda e: cnnlab.create_model("lenet", image_size=8), ValueError),
]


@pytest.mark.parametrize("call, kind", API_CASES)
def test_api_raises_cnnlab_errors(env, call, kind):
    with pytest.raises(cnnlab.CnnlabError) as info:
        call(env)
    assert isinstance(info.value, kind)
    assert "\n" not in str(info.value)
    assert not (env["root"] / "pwned").exists()


def test_no_download_of_data_not_on_disk_is_said_in_the_command_lines_words(
    tmp_path, monkeypatch, capsys
):
    from cnnlab.data import locate

    monkeypatch.setattr(locate, "SYSTEM_DATA_DIRS", [])
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    argv = ["train", "--dataset", "cifar2", "--no-download", "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: cifar10 was not found in {tmp_path}, {tmp_path / 'cache'}; put "
        "cifar-10-batches-py/ (from cifar-10-python.tar.gz), or cifar10/train.npz + test.npz in "
        "a folder named by --data-dir (in Python data_dir=) or CNNLAB_DATA, or allow "
        "downloading it (drop --no-download; in Python download=True)\n"
    )
