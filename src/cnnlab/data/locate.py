"""Where built-in data sets are found on disk, without a network and without decoding anything.

Roots are searched in order: the explicit `data_dir`, `$CNNLAB_DATA` (one folder or several
joined by os.pathsep), the user cache (`$CNNLAB_CACHE`, else ~/.cache/cnnlab, where downloads
go too), then SYSTEM_DATA_DIRS. Within a root, a data set is accepted in its upstream format
under `<root>/<name>/` or torchvision's layout, or as `<root>/<name>/{train,test}.npz`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.specs import BUILTIN_DATASETS, DatasetSpec, files_wanted, parse_dataset_name
from cnnlab.errors import DataNotFoundError

# Well-known system places. Debian's dataset-fashion-mnist package puts the IDX .gz files in
# /usr/share/datasets/fashion-mnist/, so the parent is a root. Tests monkeypatch this list.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets"), Path("/usr/local/share/datasets")]

# upstream MNIST-format file names, in the order read_idx_split wants them; each may end in .gz
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
NPZ_FILES = ("train.npz", "test.npz")


@dataclass(frozen=True)
class Source:
    """A folder holding one complete copy of a data set's files."""

    format: str  # "idx", "cifar" (python-pickle batches) or "npz"
    path: Path
    files: tuple[Path, ...]  # in the order the format's reader wants them


def cache_dir() -> Path:
    """The user cache: downloads and decoded arrays (`$CNNLAB_CACHE`, else ~/.cache/cnnlab)."""
    return Path(os.environ.get("CNNLAB_CACHE") or "~/.cache/cnnlab").expanduser()


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The roots searched for built-in data sets, in order (existing or not)."""
    dirs = [Path(data_dir).expanduser()] if data_dir else []
    env = os.environ.get("CNNLAB_DATA", "")
    dirs += [Path(part).expanduser() for part in env.split(os.pathsep) if part]
    dirs.append(cache_dir())
    dirs += [Path(path) for path in SYSTEM_DATA_DIRS]
    return list(dict.fromkeys(dirs))  # drop repeats, keep the first place


def _match(folder: Path, format: str) -> tuple[Source | None, str | None]:
    """The files of `format` in `folder`: a Source if all are there, else a note on what lacks."""
    if format == "idx":
        found = []
        for name in IDX_FILES:  # the uncompressed file first: it is faster to read
            path = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
            found.append(path)
    else:
        found = [
            path if path.is_file() else None
            for path in (
                folder / name for name in (CIFAR_FILES if format == "cifar" else NPZ_FILES)
            )
        ]
    present = [path for path in found if path is not None]
    if len(present) == len(found):
        return Source(format, folder, tuple(present)), None
    if not present:
        return None, None
    names = IDX_FILES if format == "idx" else CIFAR_FILES if format == "cifar" else NPZ_FILES
    missing = [name for name, path in zip(names, found, strict=True) if path is None]
    return None, f"{folder} lacks {', '.join(missing)}"


def candidates(spec: DatasetSpec, root: Path, explicit: bool) -> list[tuple[Path, str]]:
    """(folder, format) places to try in one root, best first."""
    named = root / spec.folder  # e.g. <root>/fashion-mnist
    places = [(named, spec.format), (root / spec.torchvision_dir, spec.format)]
    if spec.format == "cifar":
        places.append((named / spec.torchvision_dir, "cifar"))  # <root>/cifar10/cifar-10-...
    places.append((named, "npz"))
    if explicit:
        # files directly in a root only for the folder the user named for this run: in a shared
        # root, mnist and fashion-mnist files look alike and one would pass for the other
        places += [(root, spec.format), (root, "npz")]
    return places


def locate(
    spec: DatasetSpec, data_dir: str | Path | None = None
) -> tuple[Source | None, list[str]]:
    """The first complete copy of `spec`'s files in the search order, and notes on partial ones."""
    explicit = Path(data_dir).expanduser() if data_dir else None
    notes: list[str] = []
    for root in search_dirs(data_dir):
        if not root.is_dir():
            continue
        for folder, format in candidates(spec, root, root == explicit):
            source, note = _match(folder, format)
            if source is not None:
                return source, notes
            if note and note not in notes:
                notes.append(note)
    return None, notes


def find_dataset(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder a data set would be loaded from, or None (finds files, decodes nothing)."""
    parsed = parse_dataset_name(name)
    if parsed.spec is None:
        return parsed.path.resolve() if parsed.path.is_dir() else None
    spec = parsed.spec
    source, _ = locate(BUILTIN_DATASETS[spec.source] if spec.source else spec, data_dir)
    return source.path if source else None


def on_disk(spec: DatasetSpec, data_dir: str | Path | None, *, download_ok: bool) -> Source:
    """Where `spec`'s files are; a DataNotFoundError naming the places looked in, any
    incomplete copy seen, and how to get the data, when they are in none."""
    source, notes = locate(spec, data_dir)
    if source is None:
        looked = ", ".join(str(path) for path in search_dirs(data_dir))
        incomplete = f" (incomplete: {'; '.join(notes)})" if notes else ""
        advice = how_to_get(spec, download_ok)
        raise DataNotFoundError(f"{spec.name} was not found in {looked}{incomplete}; {advice}")
    return source


def how_to_get(spec: DatasetSpec, download_ok: bool = True) -> str:
    """The one-line advice on making a data set available, to the command line and Python
    alike (each one's spelling)."""
    if download_ok:
        last = "run with network access to download it"
    else:
        last = "allow downloading it (drop --no-download; in Python download=True)"
    return (
        f"put {files_wanted(spec)} in a folder named by --data-dir (in Python data_dir=) or "
        f"CNNLAB_DATA, or {last}"
    )
