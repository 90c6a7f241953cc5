"""One config trained once per seed: `cnnlab train --seeds 0,1,2`, or
`cnnlab.train_seeds(cfg, [0, 1, 2])` (api.py), which trains the configs made here.

A single run's accuracy moves by a point or more from seed to seed, so one run against another
says little; several seeds of each measure that spread (`cnnlab compare` shows mean ± std).
Each seed is its own run folder, `<name>-seed<k>`, a run like any other (resume it, plot it).
Everything that can be checked without training is checked for every seed first: the config,
the seeds, every run folder, so a mistake never shows up after the first seed has trained.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` → [0, 1, 2]: whole numbers >= 0, comma-separated, each once."""
    parts = [part.strip() for part in text.split(",")]
    if not all(re.fullmatch(r"-?[0-9]+", part) for part in parts):
        raise ConfigError(
            f"--seeds expects whole numbers separated by commas, like 0,1,2, got {text!r}"
        )
    return check_seeds([int(part) for part in parts])


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """The seeds as a list, refused in one line when empty, negative, not ints or repeated."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("give at least one seed, like --seeds 0,1,2")
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seeds must be whole numbers, got {seed!r}")
        if seed < 0:
            raise ConfigError(f"seeds must be 0 or more, got {seed}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"seed {', '.join(map(str, repeated))} is given twice; each seed trains one run"
        )
    return seeds


def seed_configs(config: TrainConfig, seeds: Sequence[int]) -> list[TrainConfig]:
    """One config per seed, named `<name>-seed<k>` (name: config.name, else the default
    model-dataset-timestamp, taken once for all), each checked and its folder free to use."""
    from cnnlab.training.run_dir import default_run_name, prepare_run_dir

    seeds = check_seeds(seeds)
    TrainConfig.from_dict(config.to_dict(), source="train_seeds").validate()
    base = config.name or default_run_name(config)
    configs = [dataclasses.replace(config, seed=seed, name=f"{base}-seed{seed}") for seed in seeds]
    for cfg in configs:
        cfg.validate()  # the name with its suffix is still a plain folder name
        prepare_run_dir(cfg)  # exists and not --overwrite, or not writable: refused now
    return configs
