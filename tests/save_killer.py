"""Kill checkpoint writers mid-save, many times, and check what is left (run as a script).

It runs in a fresh process with one torch thread: forking a process whose thread pools are
busy (like pytest's, after other tests) can hang the child, which would test nothing.

    python tests/save_killer.py FOLDER KILLS   ->  prints "kills=K loads=L"
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import torch

from cnnlab.training import checkpoint as ckpt


def write_forever(path: Path) -> None:
    counter = 0
    while True:
        counter += 1
        weights = torch.full((256, 1024), float(counter))  # 1 MB, so a save takes a while
        ckpt.save_checkpoint(
            {
                "format": ckpt.FORMAT,
                "version": ckpt.VERSION,
                "counter": counter,
                "weights": weights,
            },
            path,
        )


def main(folder: Path, kills: int) -> None:
    torch.set_num_threads(1)
    path, rng, loads = folder / "last.pt", random.Random(), 0
    for _ in range(kills):
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(path)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.005, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if path.exists():  # whatever is there must be one whole checkpoint
            state = ckpt.load_checkpoint(path)
            assert bool(torch.all(state["weights"] == state["counter"])), "torn checkpoint"
            loads += 1
    print(f"kills={kills} loads={loads}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
