"""Under `make mutation` only (tools/mutation is on PYTHONPATH there): a cnnlab process that a
test starts (the CLI, torchrun's workers) records which mutated functions it ran.

mutmut learns which tests cover a function by counting calls in the test process itself, so
calls made in a child process would be lost and the tests that check the CLI, torchrun and
crash recovery would never be run against a mutant. The child writes its calls to the folder
that child_processes.py (the pytest plugin beside this file) names; the plugin adds them to
the test that started the child.
"""

import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("CNNLAB_MUTMUT_HITS"):
    import atexit
    from pathlib import Path

    import mutmut.mutation.trampoline

    _hits: set[str] = set()

    def _record(name: str, caller: str | None = None) -> None:
        _hits.add(name)

    def _write() -> None:
        folder = Path(os.environ["CNNLAB_MUTMUT_HITS"])
        (folder / f"{os.getpid()}.txt").write_text("\n".join(sorted(_hits)))

    mutmut.mutation.trampoline.record_trampoline_hit = _record
    atexit.register(_write)
