"""`cnnlab explain RUN [IMAGE...]`: Grad-CAM and saliency of a run's mistakes, of test images
(--index) or of image files, one PNG per image (report/explanations.py does the work)."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import add_command, command_config
from cnnlab.config import ExplainConfig


def add_commands(subparsers: Any) -> None:
    add_command(
        subparsers, ExplainConfig, run_explain,
        help="show where a trained model looked: Grad-CAM and saliency, as PNG files",
        description=(
            "Show where a trained model looked as it decided. Each image gets a PNG of "
            "three panels: the image as the model saw it, its Grad-CAM heatmap over it "
            "(the last conv layer's maps weighed by the class score's gradient; --layer for "
            "another module) and its saliency (the score's gradient per pixel). The images "
            "are IMAGE files, test images (--index), or by default the run's most confident "
            "mistakes, the report's top losses. The class explained is the predicted one, "
            "or --target. A run folder gives its best.pt, else its last.pt."
        ),
        usage="cnnlab explain RUN [IMAGE ...] [--index N,N,...] [--count N] [--target CLASS] "
        "[--layer NAME] [--out DIR] [--device D]",
        leading=(
            ("checkpoint", dict(metavar="RUN", help="a run folder or a .pt checkpoint")),
            ("images", dict(nargs="*", metavar="IMAGE", help="image files to explain")),
        ),
    )  # fmt: skip


def run_explain(args: argparse.Namespace) -> None:
    from cnnlab.report.explanations import explain, output_folder

    cfg = command_config(args, ExplainConfig)
    options = {key: value for key, value in cfg.to_dict().items() if key != "out"}
    folder = output_folder(args.checkpoint, cfg.out)
    found = explain(args.checkpoint, args.images or None, **options)
    paths = found.write(folder)
    files = f"{len(paths)} file{'s' * (len(paths) != 1)}"
    print(f"Grad-CAM of layer {found.layer}; wrote {files} to {paths[0].parent}/")
    for path, caption in zip(paths, map(found.caption, range(len(paths))), strict=True):
        print(f"  {path.name}  {caption}")
    if found.note:
        print(f"note: {found.note}")
