"""`cnnlab train` in detail (cli/train.py): what reaches the config, and what is refused first.

The flags, a recipe's values and the name a recipe gives its runs reach the config that is
trained; a recipe's bad value is named as the recipe names it, a flag's by its flag; a missing
--model file, built-in data not on disk with --no-download, and --seeds or --recipe given with
what they exclude are refused in one line, before anything trains. Most tests stand in for the
training itself (`no_training`: fit, resume_run and train_seeds record what they were given);
one real --seeds run and one real --resume (both one epoch on small data) show the rest.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnlab.cli import main
from cnnlab.report.compare import compare

FAST = ["--epochs", "1", "--batch-size", "64", "--progress", "none", "--no-tensorboard"]


@pytest.fixture
def no_training(monkeypatch):
    """fit, resume_run and train_seeds replaced by stand-ins that record their arguments (so a
    command that should be refused never trains for real); api.finish records its result."""
    import cnnlab.api
    import cnnlab.training

    seen = SimpleNamespace(fit=[], finish=[], resume=[], seeds=[], result=object())

    def fit(cfg):
        seen.fit.append(cfg)
        return seen.result

    def resume_run(run_dir, **overrides):
        seen.resume.append((run_dir, overrides))
        return seen.result

    monkeypatch.setattr(cnnlab.training, "fit", fit)
    monkeypatch.setattr(cnnlab.training, "resume_run", resume_run)
    monkeypatch.setattr(cnnlab.api, "finish", lambda result: seen.finish.append(result))
    monkeypatch.setattr(cnnlab.api, "train_seeds", lambda cfg, seeds: seen.seeds.append(seeds))
    return seen


def trained_config(seen, argv: list[str]):
    """The config `cnnlab train ARGV` hands to fit (which must run once, its result finished)."""
    assert main(["train", *argv]) == 0
    (cfg,) = seen.fit
    assert seen.finish == [seen.result]
    return cfg


def refused(seen, capsys, argv: list[str]) -> str:
    """The one error line of `cnnlab train ARGV`, which exits 2 before anything trains."""
    assert main(["train", *argv]) == 2
    assert seen.fit == seen.resume == seen.seeds == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.rstrip("\n")


def recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


# --- flags and recipes reach the config ---


def test_flags_reach_the_config_that_is_trained(no_training, npz_data, tmp_path):
    argv = ["--dataset", npz_data, "--batch-size", "7", "--out-dir", str(tmp_path)]
    cfg = trained_config(no_training, [*argv, "--name", "seven"])
    assert (cfg.dataset, cfg.batch_size, cfg.name) == (npz_data, 7, "seven")
    assert cfg.out_dir == str(tmp_path)


def test_without_recipe_or_name_the_run_keeps_the_default_name(no_training, npz_data, tmp_path):
    cfg = trained_config(no_training, ["--dataset", npz_data, "--out-dir", str(tmp_path)])
    assert cfg.name is None  # model-dataset-timestamp, chosen when the run starts


def test_recipe_values_are_trained_and_flags_override_them(no_training, npz_data, tmp_path):
    path = recipe(tmp_path, f'dataset = "{npz_data}"\nepochs = 5\nbatch_size = 9\n')
    argv = ["--recipe", str(path), "--batch-size", "7", "--out-dir", str(tmp_path)]
    cfg = trained_config(no_training, argv)
    assert (cfg.dataset, cfg.epochs, cfg.batch_size) == (npz_data, 5, 7)


def test_a_recipe_names_its_runs_after_itself_with_a_timestamp(no_training, npz_data, tmp_path):
    path = recipe(tmp_path, f'dataset = "{npz_data}"\n')
    cfg = trained_config(no_training, ["--recipe", str(path), "--out-dir", str(tmp_path)])
    assert re.fullmatch(r"r-\d{8}-\d{6}", cfg.name), cfg.name


def test_a_recipe_keeps_its_own_name(no_training, npz_data, tmp_path):
    path = recipe(tmp_path, f'dataset = "{npz_data}"\nname = "mine"\n')
    cfg = trained_config(no_training, ["--recipe", str(path), "--out-dir", str(tmp_path)])
    assert cfg.name == "mine"


def test_name_flag_wins_over_the_recipes_name(no_training, npz_data, tmp_path):
    path = recipe(tmp_path, f'dataset = "{npz_data}"\n')
    argv = ["--recipe", str(path), "--name", "flagged", "--out-dir", str(tmp_path)]
    assert trained_config(no_training, argv).name == "flagged"


def test_a_run_folder_with_last_pt_is_left_to_fit_to_continue(no_training, tiny_run, npz_data):
    # an interrupted run's folder (last.pt in it) is left to fit, which continues it
    argv = ["--dataset", npz_data, "--out-dir", str(tiny_run.parent), "--name", tiny_run.name]
    assert trained_config(no_training, argv).name == tiny_run.name


# --- values: a recipe's named as the recipe names them, a flag's by its flag ---


def test_a_bad_recipe_value_is_named_with_the_recipe(no_training, tmp_path, capsys):
    path = recipe(tmp_path, "epochs = 0\n")
    message = refused(no_training, capsys, ["--recipe", str(path)])
    assert message == f"error: recipe {path}: epochs must be at least 1, got 0"


def test_a_bad_flag_over_a_recipe_is_named_as_the_flag(no_training, tmp_path, capsys):
    path = recipe(tmp_path, "epochs = 0\n")
    message = refused(no_training, capsys, ["--recipe", str(path), "--epochs", "-1"])
    assert message == "error: --epochs must be at least 1, got -1"


def test_a_default_at_fault_without_recipe_is_named_as_its_flag(no_training, npz_data, capsys):
    # --start-lr above the default --end-lr: the error is end_lr's, a field not given
    message = refused(no_training, capsys, ["--dataset", npz_data, "--start-lr", "100"])
    assert message == "error: --end-lr must be above --start-lr (100), got 10.0"


# --- --model FILE.py:Name ---


def test_a_missing_model_file_is_refused(no_training, tmp_path, capsys):
    folder = tmp_path / "a:b"  # a colon in the folder: the file is before the last one
    folder.mkdir()
    message = refused(no_training, capsys, ["--model", f"{folder}/nope.py:Net"])
    assert message == (
        f"error: model file {(folder / 'nope.py').resolve()} does not exist; give --model "
        "path/to/file.py:Name or package.module:Name"
    )


def test_an_existing_model_file_is_trained(no_training, npz_data, tmp_path):
    (tmp_path / "net.py").write_text("")
    model = f"{tmp_path}/net.py:Net"
    argv = ["--model", model, "--dataset", npz_data, "--out-dir", str(tmp_path)]
    assert trained_config(no_training, argv).model == model


def test_a_package_module_model_is_not_looked_for_as_a_file(no_training, npz_data, tmp_path):
    argv = ["--model", "mypackage.nets:Net", "--dataset", npz_data, "--out-dir", str(tmp_path)]
    assert trained_config(no_training, argv).model == "mypackage.nets:Net"


# --- built-in data with --no-download ---


def test_no_download_of_built_in_data_not_on_disk_is_refused(no_training, tmp_path, capsys):
    argv = ["--dataset", "cifar2", "--no-download", "--data-dir", str(tmp_path)]
    message = refused(no_training, capsys, argv)
    assert message == (
        f"error: cifar10 was not found in {tmp_path}, {os.environ['CNNLAB_CACHE']}; put "
        "cifar-10-batches-py/ (from cifar-10-python.tar.gz), or cifar10/train.npz + test.npz in "
        "a folder named by --data-dir (in Python data_dir=) or CNNLAB_DATA, or allow "
        "downloading it (drop --no-download; in Python download=True)"
    )


def test_no_download_finds_built_in_data_in_the_data_dir(no_training, fake_cifar_root, tmp_path):
    argv = ["--dataset", "cifar2", "--no-download", "--data-dir", str(fake_cifar_root)]
    cfg = trained_config(no_training, [*argv, "--out-dir", str(tmp_path)])
    assert (cfg.dataset, cfg.download, cfg.data_dir) == ("cifar2", False, str(fake_cifar_root))


def test_built_in_data_not_on_disk_is_left_to_download(no_training, tmp_path):
    cfg = trained_config(no_training, ["--dataset", "cifar2", "--out-dir", str(tmp_path)])
    assert (cfg.dataset, cfg.download) == ("cifar2", True)


def test_no_download_of_npz_data_needs_only_its_files(no_training, npz_data, tmp_path):
    argv = ["--dataset", npz_data, "--no-download", "--out-dir", str(tmp_path)]
    assert trained_config(no_training, argv).download is False


# --- --resume and --seeds with what they exclude ---


def test_recipe_and_resume_together_are_refused(no_training, tiny_run, tmp_path, capsys):
    path = recipe(tmp_path, "epochs = 2\n")
    message = refused(no_training, capsys, ["--recipe", str(path), "--resume", str(tiny_run)])
    assert message == "error: give --recipe or --resume, not both (a run keeps its own recipe)"


def test_resume_checks_each_flag_before_training(no_training, tiny_run, capsys):
    message = refused(no_training, capsys, ["--resume", str(tiny_run), "--epochs", "0"])
    assert message == "error: --epochs must be at least 1, got 0"


def test_seeds_and_resume_together_are_refused(no_training, tiny_run, capsys):
    message = refused(no_training, capsys, ["--seeds", "0,1", "--resume", str(tiny_run)])
    assert message == (
        "error: give --seeds or --resume, not both; resume each seed's run folder on its own"
    )


def test_seeds_and_seed_together_are_refused(no_training, npz_data, tmp_path, capsys):
    argv = ["--dataset", npz_data, "--seeds", "0,1", "--seed", "3", "--out-dir", str(tmp_path)]
    message = refused(no_training, capsys, argv)
    assert message == (
        "error: give --seeds or --seed, not both (--seeds 0,1,2 sets each run's seed)"
    )


# --- real runs: --resume one more epoch, --seeds with one seed ---


def run_cli(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(scope="module")
def resumed(tiny_run_copy: Path) -> SimpleNamespace:
    """tiny_run (3 epochs) resumed with --epochs 4."""
    return run_cli(["train", "--resume", str(tiny_run_copy), "--epochs", "4"])


@pytest.fixture(scope="module")
def seeded(npz_data: str, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """`cnnlab train --seeds 3 --name s`: one seed's run, one epoch on npz_data."""
    out_dir = tmp_path_factory.mktemp("seeded")
    argv = ["train", "--model", "mnist_cnn", "--dataset", npz_data, *FAST, "--no-report"]
    done = run_cli([*argv, "--seeds", "3", "--name", "s", "--out-dir", str(out_dir)])
    done.out_dir = out_dir
    return done


def test_resume_trains_the_epochs_the_flag_adds(resumed, tiny_run_copy):
    assert (resumed.code, resumed.err) == (0, "")
    metrics = (tiny_run_copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in metrics] == [1, 2, 3, 4]


def test_seeds_train_one_run_folder_per_seed(seeded):
    assert seeded.code == 0
    assert sorted(p.name for p in seeded.out_dir.iterdir()) == ["s-seed3"]
    config = json.loads((seeded.out_dir / "s-seed3" / "config.json").read_text())["config"]
    assert (config["seed"], config["epochs"], config["model"]) == (3, 1, "mnist_cnn")


def test_seeds_print_the_compare_table_of_their_runs(seeded):
    assert seeded.out == f"{compare([seeded.out_dir / 's-seed3'])}\n"
    assert seeded.out.startswith("run ")
