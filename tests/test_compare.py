"""`cnnlab compare` and `cnnlab train --seeds`: seeds of one setting are one row (mean ± sample
std), only the settings that differ are columns, and the notes say when an order may be noise."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import ConfigError, RunFolderError
from cnnlab.report.compare import CURVES, compare
from cnnlab.report.compare_page import html_page
from cnnlab.report.run_folder import read_run
from cnnlab.training.seeds import parse_seeds, seed_configs
from helpers import write_learnable_npz

PNG = b"\x89PNG\r\n\x1a\n"


def tiny(dataset: str, out: Path, name: str, seed: int, **extra) -> Path:
    return cnnlab.train(
        model="mnist_cnn", dataset=dataset, epochs=2, batch_size=32, optimizer="adam", lr=3e-4,
        out_dir=str(out), name=name, progress="none", tensorboard=False, report=False, seed=seed,
        **extra,
    ).run_dir  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[Path]]:
    """3 seeds of adam at lr 3e-4, 2 seeds of the same with weight decay (other folders), on
    128 training images (compare reads the folders: a third of npz_data's work serves). At
    3e-3 every seed reached 1.0 after one epoch, and each mean ± std below compared zeros; at
    3e-4 the seeds' final and best accuracies differ (0.75 to 1.0)."""
    root = tmp_path_factory.mktemp("compare")
    data = "npz:" + str(write_learnable_npz(root / "data", train=128, test=32))
    base = [tiny(data, root / "a", f"adam-seed{k}", k) for k in (0, 1, 2)]
    wd = [tiny(data, root / "b", f"wd-seed{k}", k, weight_decay=0.01) for k in (0, 1)]
    return {"base": base, "wd": wd}


def copy_with_accuracies(run: Path, dest: Path, final: float, best: float | None = None) -> Path:
    """A copy of `run` whose last epoch's test accuracy is `final` (and an earlier one `best`)."""
    shutil.copytree(run, dest)
    rows = [json.loads(line) for line in (dest / "metrics.jsonl").read_text().splitlines()]
    rows[-1]["test_accuracy"] = final
    rows[0]["test_accuracy"] = best if best is not None else final - 0.01
    (dest / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


def spread_runs(root: Path, source: Path, name: str, finals: list[float], **config) -> list[Path]:
    """Copies of `source` named name-seedK, with these final accuracies and config changes."""
    paths = []
    for k, final in enumerate(finals):
        path = copy_with_accuracies(source, root / f"{name}-seed{k}", final)
        info = json.loads((path / "config.json").read_text())
        info["config"].update(seed=k, name=path.name, **config)
        (path / "config.json").write_text(json.dumps(info))
        paths.append(path)
    return paths


def test_seeds_of_one_setting_are_one_row_with_mean_and_sample_std(runs):
    c = compare([*runs["base"], *runs["wd"]])
    assert len(c.rows) == 2
    by_label = {row.label: row for row in c.rows}
    assert set(by_label) == {"adam", "wd"}
    for label, paths in (("adam", runs["base"]), ("wd", runs["wd"])):
        records = [read_run(p) for p in paths]
        row = by_label[label]
        finals = [r.metrics[-1]["test_accuracy"] for r in records]
        bests = [r.best_accuracy for r in records]
        assert row.n == len(paths)
        assert row.seeds == list(range(len(paths)))
        assert row.final.mean == pytest.approx(statistics.mean(finals))
        assert row.final.std == pytest.approx(statistics.stdev(finals))
        assert row.best.mean == pytest.approx(statistics.mean(bests))
        assert row.best.std == pytest.approx(statistics.stdev(bests))
    means = [row.final.mean for row in c.rows]
    assert means == sorted(means, reverse=True)  # best first


def test_only_the_settings_that_differ_are_columns(runs):
    c = compare([*runs["base"], *runs["wd"]])
    assert c.differing == ["weight_decay"]  # not seed, name, out_dir (they differ too)
    header = c.table().splitlines()[0].split()
    assert "weight_decay" in header
    assert not {"seed", "name", "out_dir", "model", "lr"} & set(header)
    cells = {row[0]: row[-1] for row in c.cells()}
    assert cells == {"adam": "0", "wd": "0.01"}
    assert compare(runs["base"]).differing == []  # one row: nothing differs


def test_settings_that_do_not_change_what_is_learned_keep_runs_in_one_row(runs, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(runs["base"][2], moved)
    info = json.loads((moved / "config.json").read_text())
    info["config"].update(device="cpu", threads=3, progress="bar", tensorboard=True)
    (moved / "config.json").write_text(json.dumps(info))
    c = compare([*runs["base"][:2], moved])
    assert [row.n for row in c.rows] == [3]
    info["config"]["epochs"] = 5  # epochs is a setting: it is another row, shown in its column
    (moved / "config.json").write_text(json.dumps(info))
    c = compare([*runs["base"][:2], moved])
    assert sorted(row.n for row in c.rows) == [1, 2]
    assert c.differing == []  # epochs has its own column
    assert any("stopped after 2 of 5 epochs" in w for w in c.warnings)
    assert "2/5" in c.table()


def test_overlapping_spreads_are_a_warning_and_far_apart_ones_are_not(runs, tmp_path):
    source = runs["base"][0]
    a = spread_runs(tmp_path, source, "a", [0.80, 0.82, 0.84])
    b = spread_runs(tmp_path, source, "b", [0.81, 0.83, 0.85], weight_decay=0.001)
    c = spread_runs(tmp_path, source, "c", [0.50, 0.51, 0.52], weight_decay=0.1)
    near = compare([*a, *b])
    [warning] = near.warnings
    assert re.fullmatch(
        r"b overlaps a \(final test accuracy, mean ± std\): their order may be seed noise",
        warning,
    )
    assert f"warning: {warning}" in str(near)
    far = compare([*a, *c])
    assert far.warnings == []
    assert [row.label for row in far.rows] == ["a", "c"]


def test_runs_on_different_data_sets_are_ranked_within_each_with_a_warning(runs, tmp_path, capsys):
    source = runs["base"][0]
    dataset, other = read_run(source).config["dataset"], "npz:/elsewhere/other-data"
    a = spread_runs(tmp_path, source, "a", [0.80, 0.82, 0.84])
    b = spread_runs(tmp_path, source, "b", [0.81, 0.83, 0.85], dataset=other)
    c = spread_runs(tmp_path, source, "c", [0.50, 0.51, 0.52], weight_decay=0.1)
    d = spread_runs(tmp_path, source, "d", [0.30, 0.31, 0.32], dataset=other, weight_decay=0.1)
    both = compare([*a, *b, *c, *d])
    # each data set's rows together, its best first; b does not "overlap" a on another test set
    assert [row.label for row in both.rows] == ["b", "d", "a", "c"]
    assert both.header[:2] == ["run", "dataset"] and both.header.count("dataset") == 1
    assert [row[1] for row in both.cells()] == [other, other, dataset, dataset]
    assert both.warnings == [
        f"these runs are on 2 data sets ({other}, {dataset}): accuracies on different test "
        "sets do not compare, so the rows are ranked within each data set"
    ]
    one = compare([*a, *c])  # one data set: no column, no warning
    assert one.warnings == [] and "dataset" not in one.header
    page = html_page(both, PNG)
    assert both.warnings[0] in page and page.count('<tr class="group">') == 1
    assert main(["compare", *map(str, [*a, *b, *c, *d])]) == 0
    assert f"warning: {both.warnings[0]}" in capsys.readouterr().out.splitlines()


def test_a_single_run_is_noted_once_with_the_seeds_hint(runs):
    c = compare([runs["base"][0], runs["wd"][0]])
    assert [row.n for row in c.rows] == [1, 1]
    assert [row.label for row in c.rows] != []
    assert {row.label for row in c.rows} == {"adam-seed0", "wd-seed0"}
    [note] = c.warnings
    assert "no measured spread" in note and "cnnlab train --seeds 0,1,2" in note
    assert "±" not in c.cells()[0][2]  # a single run has a mean, no spread


def test_out_writes_a_png_and_html_a_self_contained_page(runs, tmp_path):
    page = tmp_path / "c.html"
    c = compare([*runs["base"], *runs["wd"]], html=page, out=tmp_path / "plots")
    png = (tmp_path / "plots" / CURVES).read_bytes()
    assert png.startswith(PNG)
    assert c.written == [tmp_path / "plots" / CURVES, page]
    assert [p.name for p in (tmp_path / "plots").iterdir()] == [CURVES]  # no temporary left
    text = page.read_text()
    assert "data:image/png;base64," in text
    assert not re.search(r"https?://", text)
    assert "<table>" in text and "weight_decay" in text and "±" in text
    for row in c.cells():
        assert row[2] in text  # final accuracy mean ± std, as in the printed table


def test_bad_folders_and_places_are_refused_before_anything_is_written(runs, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="does not exist"):
        compare([runs["base"][0], tmp_path / "nope"], out=tmp_path / "plots")
    with pytest.raises(ConfigError, match="is a file"):
        compare(runs["base"], out=tmp_path / "file", html=tmp_path / "c.html")
    with pytest.raises(ConfigError, match="does not exist"):
        compare(runs["base"], out=tmp_path / "plots", html=tmp_path / "no" / "c.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cli_compare_prints_the_table(runs, tmp_path, capsys):
    argv = ["compare", *map(str, runs["base"]), str(runs["wd"][0]), "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "n", "final"]
    assert re.match(r"-+  -+", lines[1])
    assert "±" in out and "weight_decay" in out
    assert "single run (wd-seed0)" in out
    assert f"wrote {tmp_path / CURVES}" in out
    assert (tmp_path / CURVES).read_bytes().startswith(PNG)


def test_compare_does_not_import_torch(runs, tmp_path):
    code = (
        "import sys\nfrom cnnlab.cli import main\n"
        f"code = main({['compare', *map(str, runs['base']), '--html', str(tmp_path / 'c.html')]!r})"
        "\nprint(code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr


def test_train_seeds_trains_one_folder_per_seed_then_prints_the_table(npz_data, tmp_path, capsys):
    argv = [
        "train", "--model", "mnist_cnn", "--dataset", npz_data, "--epochs", "1",
        "--batch-size", "64", "--optimizer", "adam", "--lr", "3e-3", "--out-dir", str(tmp_path),
        "--name", "twice", "--progress", "none", "--no-tensorboard", "--no-report",
        "--seeds", "0,1",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice-seed0", "twice-seed1"]
    for k in (0, 1):
        info = json.loads((tmp_path / f"twice-seed{k}" / "config.json").read_text())
        assert info["config"]["seed"] == k and info["config"]["name"] == f"twice-seed{k}"
    [row] = [line for line in out.splitlines() if line.startswith("twice ")]
    assert re.match(r"twice\s+2\s+\d\.\d{4} ± \d\.\d{4}", row)


def test_train_seeds_checks_every_folder_before_training(npz_data, tmp_path):
    (tmp_path / "x-seed2").mkdir()
    (tmp_path / "x-seed2" / "keep").write_text("an earlier run")
    cfg = cnnlab.TrainConfig(dataset=npz_data, out_dir=str(tmp_path), name="x")
    with pytest.raises(ConfigError, match="x-seed2 already exists"):
        cnnlab.train_seeds(cfg, [0, 1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-seed2"]
    names = [c.name for c in seed_configs(cfg, [3, 4])]
    assert names == ["x-seed3", "x-seed4"]
    unnamed = seed_configs(cnnlab.TrainConfig(dataset=npz_data, out_dir=str(tmp_path)), [0, 1])
    assert re.fullmatch(r"lenet-.+-\d{8}-\d{6}-seed0", unnamed[0].name)
    assert unnamed[1].name == unnamed[0].name[: -len("0")] + "1"  # one timestamp for all


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "whole numbers"),
        ("0,x", "whole numbers"),
        ("0,,1", "whole numbers"),
        ("1.5", "whole numbers"),
        ("-1", "0 or more"),
        ("0,1,0", "seed 0 is given twice"),
    ],
)
def test_malformed_seed_lists_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)


def test_seed_lists_read_back():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds(" 3, 1 ") == [3, 1]
