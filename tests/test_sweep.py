"""Sweeps: shipped tables resolve, files are checked, `t3al-sweep` matches separate runs and reads each video once."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from t3al.adapt.engine import work
from t3al.adapt.config import ConfigError, make_config
from t3al.adapt.algorithm.adapter import Adapter
from t3al.adapt.algorithm.localizer import shared_adaptations
from t3al.adapt.engine.pipeline import run
from t3al.adapt.engine.spec import build_spec
from t3al.adapt.engine.sweep import load_sweep, parse_sweep, sweep_names
from t3al.adapt.sweep_cli import main

from conftest import write_toy_world

CLASSES = ["Jump", "Throw", "Swim"]
FPS = 10.0


def _world(tmp_path):
    """Six short videos, one action each; two splits of two unseen classes."""
    actions = {f"v{i}": (160, 40 + 4 * i, 100 + 4 * i, i % 3) for i in range(6)}
    return write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Throw", "Swim"]], FPS)


SWEEP = """
description = "toy sweep"
rows = [
    {name = "naive", method = "naive"},
    {name = "T=2", steps = 2},
    {name = "T=2 argmax", steps = 2, label_rule = "argmax", suppression = false},
    {name = "T=2 stream", steps = 2, protocol = "stream"},
    {name = "T=2 stream count", steps = 2, protocol = "stream", oracle = ["count"]},
]
"""


def _resolve(sweep, common=None, preset="thumos14"):
    """Each row's config over ``preset`` and the common settings, as the run spec resolves them."""
    return {name: make_config(preset, layers=[("command line", common or {}), (f"row {name!r}", settings)])
            for name, settings in sweep.rows.items()}


@pytest.mark.parametrize("name", sweep_names())
def test_every_shipped_sweep_resolves_on_both_presets_to_distinct_thumos14_configs(name):
    sweep = load_sweep(name)
    assert sweep.description and len(sweep.rows) >= 4
    configs = _resolve(sweep)
    assert len(set(configs.values())) == len(configs)
    _resolve(sweep, preset="activitynet")


def test_shipped_sweeps_cover_the_paper_tables():
    assert {"table1", "table5", "table6", "fig4"} <= set(sweep_names())
    losses = _resolve(load_sweep("table5"))
    assert {(c.separation, c.representation) for c in losses.values()} == {
        ("bce", "none"), ("byol", "none"), ("none", "text"), ("byol", "text"), ("byol", "pairwise")}
    oracles = _resolve(load_sweep("fig4"))
    assert oracles["all oracles"].oracle == ("class", "count", "selection") and oracles["T3AL"].oracle == ()
    main_rows = _resolve(load_sweep("table1"))
    assert main_rows["naive VLM"].method == "naive" and main_rows["T3AL_0"].steps == 0
    assert main_rows["T3AL"].protocol == "reset" and main_rows["T3AL (public stream)"].protocol == "stream"


def test_common_settings_apply_to_every_row_and_rows_win(tmp_path):
    cache = _world(tmp_path)
    configs = build_spec(cache, options={"steps": 7, "radius": 0}, rows=parse_sweep(SWEEP, "toy", "toy").rows).configs
    assert configs["T=2"].steps == 2 and configs["naive"].steps == 7
    assert all(c.radius == 0 for c in configs.values())


@pytest.mark.parametrize("text, message", [
    ("rows = []", "non-empty list"),
    ("colour = 1\nrows = [{name = 'a'}]", "unknown key"),
    ("rows = [{steps = 1}]", "row 1 needs a name"),
    ("rows = [{name = '../up'}]", "row 1 needs a name"),
    ("rows = [{name = 'a:b'}]", "row 1 needs a name"),
    ("rows = [{name = 'a'}, {name = 'a'}]", "two rows are named 'a'"),
    ("rows = [{name = 'a'", "not valid TOML"),
])
def test_malformed_sweep_files_are_refused_with_the_reason(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(text, "bad", "bad.toml")


def test_a_bad_setting_names_its_row(tmp_path):
    sweep = parse_sweep("rows = [{name = 'fine'}, {name = 'broken', k = 1}]", "mine", "mine.toml")
    with pytest.raises(ConfigError, match="^sweep mine, row 'broken': k must be a number >= 2, got 1$"):
        build_spec(_world(tmp_path), rows=sweep.rows, rows_source="sweep mine, row")


def test_sweep_rows_equal_separate_runs(tmp_path):
    cache = _world(tmp_path)
    rows = parse_sweep(SWEEP, "toy", "toy").rows
    together = run(build_spec(cache, rows=rows, jobs=2))
    for name, settings in rows.items():
        spec = build_spec(cache, rows={name: settings}, jobs=1)
        alone = run(spec)[name]
        assert together[name].document["splits"] == alone.document["splits"], name
        assert together[name].document["run"]["config"] == spec.configs[name].to_dict()


def test_each_video_is_read_once_per_split_for_all_reset_rows(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    reads = []
    load = work._load
    monkeypatch.setattr(work, "_load", lambda reader, video_id: reads.append(video_id) or load(reader, video_id))
    rows = {name: settings for name, settings in parse_sweep(SWEEP, "toy", "toy").rows.items()
            if settings.get("protocol") != "stream"}
    run(build_spec(cache, rows=rows, indices=[0], jobs=1))
    assert sorted(reads) == ["v0", "v1", "v3", "v4"]  # the Jump and Throw videos, each read once for three rows


def test_sweep_command_writes_the_table_and_every_rows_results(tmp_path):
    cache = _world(tmp_path)
    (tmp_path / "mine.toml").write_text(SWEEP)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(cache), "--table", str(tmp_path / "mine.toml"), "--out", str(out),
                                       "--no-progress", "--radius", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "toy sweep" in result.output and "T=2 stream count" in result.output and "mAP@0.5" in result.output
    markdown = (out / "table.md").read_text()
    assert markdown.count("\n") == 2 + 5 and "±" in markdown
    with open(out / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == ["naive", "T=2", "T=2 argmax", "T=2 stream", "T=2 stream count"]
    assert set(rows[0]) >= {"mAP@0.3", "mAP@0.3_std", "Avg", "Avg_std"}
    for row in rows:
        document = json.loads((out / row["method"] / "results.json").read_text())
        assert document["run"]["config"]["radius"] == 0 and document["run"]["cache"]["model"] == "test-model|random|"
        assert "code_version" in document["run"] and float(row["Avg"]) == pytest.approx(document["mean"]["avg"], abs=1e-4)
        assert (out / row["method"] / "split_1" / "detections.csv").is_file()


def test_shipped_sweep_runs_by_name_and_unknown_names_are_one_line_errors(tmp_path):
    cache = _world(tmp_path)
    result = CliRunner().invoke(main, [str(cache), "--table", "table6", "--out", str(tmp_path / "t6"), "--steps", "1",
                                       "--split-index", "0", "--no-progress", "--no-curves"])
    assert result.exit_code == 0, result.output
    assert "Pv + Pt + s" in result.output and not (tmp_path / "t6" / "Pt" / "split_0" / "curves").exists()
    result = CliRunner().invoke(main, [str(cache), "--table", "table99", "--no-progress"])
    assert result.exit_code == 1 and "unknown sweep 'table99'" in result.output


def test_methods_sweep_runs_every_method_from_one_cache(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "methods"
    result = CliRunner().invoke(main, [str(cache), "--table", "methods", "--out", str(out), "--steps", "2",
                                       "--no-progress", "--no-curves"])
    assert result.exit_code == 0, result.output
    with open(out / "table.csv") as handle:
        assert [r["method"] for r in csv.DictReader(handle)] == [
            "naive", "T3AL_0", "T3AL", "FreeZAD", "AdaZAD", "T3AL + LogOIC scoring"]
    assert "note: AdaZAD: AdaZAD's optimiser settings and step count are unpublished" in result.output
    methods = {row: json.loads((out / row / "results.json").read_text())["run"]["config"]["method"]
               for row in ("T3AL_0", "FreeZAD", "AdaZAD")}
    assert methods == {"T3AL_0": "t3al0", "FreeZAD": "freezad", "AdaZAD": "adazad"}


def test_methods_share_adaptations_where_only_scoring_differs():
    configs = _resolve(load_sweep("methods"))
    assert [list(group) for group in shared_adaptations(configs)] == [
        ["naive"], ["T3AL_0", "FreeZAD"], ["T3AL", "T3AL + LogOIC scoring"], ["AdaZAD"]]


def test_splits_share_a_videos_adaptation_and_match_separate_runs(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    options = {"steps": 3, "lr": 1e-2}
    separate = [run(build_spec(cache, options=options, indices=[i], rows={"r": {}}, jobs=1), {"r": tmp_path / f"alone{i}"})["r"]
                for i in (0, 1)]
    adaptations = []
    adapt = Adapter.adapt
    monkeypatch.setattr(Adapter, "adapt", lambda self, problems, *a: adaptations.extend(p.video.video_id for p in problems)
                        or adapt(self, problems, *a))
    together = run(build_spec(cache, options=options, indices=[0, 1], rows={"r": {}}, jobs=1), {"r": tmp_path / "together"})["r"]
    for i in (0, 1):
        alone = (tmp_path / f"alone{i}" / f"split_{i}" / "detections.csv").read_text()
        assert (tmp_path / "together" / f"split_{i}" / "detections.csv").read_text() == alone
        assert together.document["splits"][i]["map"] == separate[i].document["splits"][0]["map"]
    # the Throw videos (v1, v4) are in both splits; each is adapted once when its pseudo-label agrees
    assert sorted(adaptations) == sorted(set(adaptations)) and set(adaptations) == {"v0", "v1", "v2", "v3", "v4", "v5"}
