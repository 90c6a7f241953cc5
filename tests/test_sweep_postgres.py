"""One study shared by workers on several machines: `cnnlab sweep --storage postgresql://...`
against a real PostgreSQL server, started here in a temporary data directory on a free port
(Debian's postgresql; `make setup` installs it where apt-get can). Two `cnnlab sweep`
commands with their own sweep folders, as on two machines (two processes: one started here,
one this test's own), finish one study of 4 trials between them: each trial number run once,
by one of them, and each of them runs some.

Skips, saying why, where no server program, no psycopg or (as root) no postgres user exists.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

optuna = pytest.importorskip(
    "optuna", reason="Optuna is the sweep extra: pip install -e '.[sweep]'"
)
pytest.importorskip("psycopg", reason="psycopg is the sweep extra: pip install -e '.[sweep]'")

from cnnlab.cli import main  # noqa: E402
from cnnlab.sweeps import worker  # noqa: E402
from cnnlab.sweeps.study import Tally, open_storage, quiet_optuna, storage_url  # noqa: E402
from helpers import write_learnable_npz  # noqa: E402

pytestmark = pytest.mark.slow


def server_programs() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's versioned one, else on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway server (trust authentication, user cnnlab), stopped at the end."""
    programs = server_programs()
    if programs is None:
        pytest.skip("no PostgreSQL server programs (Debian: apt-get install postgresql)")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    if os.getuid() == 0:  # initdb refuses root: run the server as the postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run([*prefix, str(programs / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "cnnlab"], **run)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run([*prefix, str(programs / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                    "-l", str(folder / "log"), "start"], **run)  # fmt: skip
    try:
        yield f"postgresql://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_on_two_sweep_folders_share_one_study(
    postgres_url, tmp_path, capsys, monkeypatch
):
    data = write_learnable_npz(tmp_path / "data", train=256, test=32)
    space = tmp_path / "shared.toml"
    space.write_text(
        f'model = "mnist_cnn"\ndataset = "npz:{data}"\nepochs = 2\nbatch_size = 32\n'
        "tensorboard = false\n[search]\nlr = { low = 1e-3, high = 1e-2, log = true }\n"
        '[study]\ntrials = 4\npruner = "none"\n'
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    args = [str(space), "--storage", postgres_url, "--no-report", "--out-dir"]
    # machine a: a `cnnlab sweep` process; machine b: the same command in this process (which
    # earlier tests left with torch imported: a second process would add 3 s of imports),
    # started once a has taken a trial, so that both take part whichever starts faster
    other = subprocess.Popen([sys.executable, "-m", "cnnlab", "sweep", *args, str(machines[0])],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)  # fmt: skip
    started = _lines_until(other, ": lr=")
    monkeypatch.setattr(worker, "POLL_SECONDS", 0.2)  # b, waiting for a's last trial: less idle
    assert main(["sweep", *args, str(machines[1])]) == 0
    outputs = [started + other.communicate(timeout=300)[0], capsys.readouterr().out]
    assert other.returncode == 0, outputs[0]
    assert all("in --storage" in text for text in outputs), outputs

    quiet_optuna()
    study = optuna.load_study(study_name="shared", storage=open_storage(storage_url(
        postgres_url, tmp_path)))  # fmt: skip
    tally = Tally.of(study)
    numbers = sorted(t.number for t in tally.done)
    assert numbers == [0, 1, 2, 3], "exactly the study's 4 trials, each once"
    assert tally.running == tally.waiting == 0
    ran_where = {
        number: [m.name for m in machines if (m / "shared/trials" / str(number)).is_dir()]
        for number in numbers
    }
    assert all(len(where) == 1 for where in ran_where.values()), ran_where
    assert {where for (where,) in ran_where.values()} == {m.name for m in machines}, ran_where
    for number, (machine,) in ran_where.items():
        metrics = tmp_path / machine / "shared/trials" / str(number) / "metrics.jsonl"
        assert len(metrics.read_text().splitlines()) == 2
        config = json.loads((metrics.parent / "config.json").read_text())["config"]
        assert config["threads"] == len(os.sched_getaffinity(0))  # one worker: every core
    # each command's table is the whole study's, wherever a trial ran
    for text in outputs:
        assert all(f"\n    {n}  complete" in text for n in numbers), text
    best = json.loads(json.dumps(study.best_trial.params))
    assert 1e-3 <= best["lr"] <= 1e-2


def _lines_until(process: subprocess.Popen, needle: str) -> str:
    """The process's output up to the first line holding `needle` (the process still runs)."""
    lines: list[str] = []
    while not lines or needle not in lines[-1]:
        line = process.stdout.readline()
        assert line, "".join(lines)  # ended without it
        lines.append(line)
    return "".join(lines)


def test_workers_on_any_machine_take_turns_through_the_database(postgres_url, tmp_path):
    """The advisory lock of worker.taking_turns: while one connection holds it, another
    (another machine's worker) waits, and goes on once it is let go."""
    import threading
    import time

    from sqlalchemy import text

    from cnnlab.sweeps.worker import Plan, taking_turns

    quiet_optuna()
    engine = open_storage(storage_url(postgres_url, tmp_path)).engine
    plan = Plan(tmp_path / "s.toml", tmp_path, postgres_url, "turns", None, 1, False)
    events: list[str] = []
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")

    def second_worker() -> None:
        with taking_turns(engine, plan):
            events.append("second in")

    with taking_turns(engine, plan):
        events.append("first in")
        other = threading.Thread(target=second_worker)
        other.start()
        # let go once the server shows the second waiting for the lock (no fixed sleep: a
        # second that got in anyway ends the wait too, and the events show it)
        deadline = time.monotonic() + 30
        with engine.connect() as connection:
            while "second in" not in events and not connection.execute(waiting).scalar():
                assert time.monotonic() < deadline, "the second worker never asked for the lock"
                time.sleep(0.02)
        events.append("first out")
    other.join(timeout=30)
    assert events == ["first in", "first out", "second in"]
