"""Files that are never torn: written next to their final name, fsynced, then `os.replace`d.

A kill at any moment leaves either the old whole file or the new whole file, never a mix; the
temporary file a killed writer leaves (`.NAME.*.tmp`) is never read, and `remove_stale_temp_files`
clears it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import zipfile
import zlib
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from pathlib import Path
from typing import BinaryIO

from cnnlab.errors import ConfigError, first_line

TEMP_TRIES = 100  # random temporary names tried before giving up (mkstemp tries 10000)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], mode: int | None = None):
    """Call `write(file)` on a temporary file beside `path`, then put it in place atomically.

    The file gets the permissions any tool's new file gets, 0o666 less the user's umask, unless
    `mode` asks for others.
    """
    path = Path(path)
    # an explicit mode from the start: the file is never more open than asked, even briefly
    fd, tmp = _create_temp(path, 0o666 if mode is None else mode & 0o777)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    """A new, empty `.NAME.XXXXXXXX.tmp` beside `path`, open for writing, created with `mode`
    less the umask: the kernel applies it, so nothing reads the umask (os.umask sets it too,
    which races with other threads), and mkstemp's 0o600 does not make every file private."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)  # as mkstemp: never write through a planted link
    for _ in range(TEMP_TRIES):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def publish(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """`atomic_write` of the files a command hands to people (pages, pictures, CSV, models to
    deploy) and of caches: like every file cnnlab writes, they follow the user's umask (0o644
    under the usual 0o022), as any other tool's output does. Raises OSError."""
    atomic_write(path, write)


def publish_bytes(path: str | Path, data: bytes) -> None:
    publish(path, lambda f: f.write(data))


def publish_text(path: str | Path, text: str) -> None:
    publish_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def write_failure_as_config_error(path: str | Path, label: str = "") -> Iterator[None]:
    """An OSError inside becomes the command's one-line ConfigError: "cannot write
    {label }{path}: {reason}" (label: the option that named it, as "--csv")."""
    try:
        yield
    except OSError as err:
        where = f"{label} {path}" if label else f"{path}"
        raise ConfigError(f"cannot write {where}: {err.strerror or err}") from None


# what check_output_file and check_output_folder say, unless a caller words it its own way:
# templates of {name} (what the user called it: "--csv"), {path}, {parent} (the folder the file
# goes in), {what} (that folder: "does not exist" or "is a file") and {give} (what to give instead)
FILE_IS_FOLDER = "{name} {path} is a folder; {give}"
NO_FOLDER = "{name} {path} is in a folder that does not exist; {give}"
FOLDER_IS_FILE = "{name} {path} is a file; {give}"


def check_output_file(
    path: str | Path,
    name: str,
    give: str,
    *,
    is_folder: str = FILE_IS_FOLDER,
    no_folder: str = NO_FOLDER,
) -> Path:
    """`path` as a Path, when a command may write a file there; a one-line ConfigError before
    anything is computed when it is a folder (`is_folder`), or when the folder it goes in does
    not exist or is a file (`no_folder`)."""
    path = Path(path)
    facts = {"name": name, "path": path, "parent": path.parent, "give": give}
    try:
        is_dir = path.is_dir()
    except OSError as err:  # a name the file system cannot hold (ENAMETOOLONG)
        raise ConfigError(f"cannot write {name} {path}: {err.strerror}; {give}") from None
    if is_dir:
        raise ConfigError(is_folder.format(**facts))
    if not path.parent.is_dir():
        what = "is a file" if path.parent.exists() else "does not exist"
        raise ConfigError(no_folder.format(**facts, what=what))
    return path


def check_output_folder(
    path: str | Path, name: str, give: str, *, is_file: str = FOLDER_IS_FILE
) -> Path:
    """`path` as a Path, when a command may write its files into it (it is created when
    missing); a one-line ConfigError when something other than a folder is there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(is_file.format(name=name, path=path, parent=path.parent, give=give))
    return path


def remove_stale_temp_files(folder: Path) -> None:
    """Delete the temporary files of writes that a kill interrupted (never read by anyone)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not every platform lets a directory be opened
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


ZIP_MAGIC = b"PK\x03\x04"  # how a zip file, so every torch.save file since torch 1.6, begins


def zip_damage(path: str | Path) -> str | None:
    """What is wrong with a zip file's bytes ("entry 'archive/data/3' fails its CRC check",
    "truncated: ..."), or None when every entry is whole or the file is no zip at all. torch
    reads its zip files without checking any CRC, so a flipped bit in a tensor loads silently;
    reads the whole file once. Raises OSError."""
    with open(path, "rb") as file:
        if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as err:
        if not zipfile.is_zipfile(path):  # the directory at a zip's end is gone
            return "truncated: the end of the zip file is missing"
        return f"not a whole zip file: {first_line(err, 80)}"
    except (EOFError, zlib.error) as err:  # a compressed entry cut short or mangled
        return f"not a whole zip file: {first_line(err, 80)}"
    return None if bad is None else f"entry '{bad}' fails its CRC check"


def size_text(count: float) -> str:
    """A byte count as people read it: 978 B, 262.3 kB, 1.5 MB (powers of 1000, as torchinfo's
    memory figures)."""
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def installed_version(package: str) -> str | None:
    """The installed distribution's version ("2.6.0"), or None when it is not installed; read
    from its metadata, never by importing it (importing torchvision takes 2+ s)."""
    try:
        return _package_version(package)
    except PackageNotFoundError:
        return None


def sha256_of(path: str | Path) -> str:
    """The file's SHA-256, hex, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
