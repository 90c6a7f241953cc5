"""The process cnnlab runs in: glibc's memory reuse, Python's garbage collector during
start-up, torch's thread count, the cores this process may use, its torchrun rank, and how
long it has run.

What this module remembers (whether it paused the collector, whether the process has taken its
first training step) is the process's own, so it is kept here, once per process, and not in
any run's objects. Nothing here imports torch at import time."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of giving them back to the OS.

    Why: glibc hands blocks from 128 KB up back to the OS when freed, so every training step's
    activations arrive as fresh pages that fault on first touch. LeNet, batch 128, 100 steps on
    one core: 300-450k page faults with the defaults, 108k with these thresholds, and steps
    1.2-1.5x faster. Blocks up to 32 MB (the largest threshold every glibc accepts) are kept;
    the process's memory then stays at its peak, which it reaches in the first step anyway.
    Process-wide and not undone: it changes where memory comes from, not any result. Returns
    whether it applied (not on other C libraries or systems).
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(
        libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 2**31 - 1)
    )


_gc_paused_for_startup = False


def pause_gc_for_startup() -> None:
    """Turn Python's cyclic garbage collector off until `startup_finished()`.

    Why: `import torch` creates about 180k objects that live as long as the process, and
    torch.optim imports torch._dynamo on its first use (another 135k); every automatic
    collection during start-up walks all of them again. With the collector off, importing
    torch._dynamo takes 0.84 s instead of 1.06 s on a 2-core machine. For the `cnnlab`
    command only: a Python program that imports cnnlab keeps its own collector settings.
    """
    global _gc_paused_for_startup
    if gc.isenabled():
        gc.disable()
        _gc_paused_for_startup = True


def startup_finished() -> None:
    """Freeze what start-up created (later collections skip it: it lives as long as the
    process anyway) and turn the collector back on, if `pause_gc_for_startup` turned it off."""
    global _gc_paused_for_startup
    if _gc_paused_for_startup:
        gc.freeze()
        gc.enable()
        _gc_paused_for_startup = False


@contextlib.contextmanager
def torch_threads_restored() -> Iterator[None]:
    """A run may set torch's global thread count (--threads, --cpu-slices); give it back after."""
    import torch  # here, not at the top: the CLI imports this module before it needs torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seconds_since_process_start() -> float | None:
    """How long this process has run (Linux: from /proc), or None where that is unknown.

    A run reports it at its first step: the start-up a user waits through before training.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


_first_step_taken = False


def startup_seconds_once() -> float | None:
    """seconds_since_process_start() at the first training step of this process, and None for
    every later run in it (`--seeds`, a loop in Python): their wait is not the process's."""
    global _first_step_taken
    if _first_step_taken:
        return None
    _first_step_taken = True
    return seconds_since_process_start()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one), at
    least 1."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def launched_rank() -> str:
    """This process's RANK as its launcher (torchrun) set it, "0" when it was started alone.
    Unchecked, and readable before the process group starts or after it failed: for "only one
    process says so" (distributed.World reads and checks it for the run itself)."""
    return os.environ.get("RANK", "0")
