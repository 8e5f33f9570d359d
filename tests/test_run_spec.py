"""The run spec: resolved once, named after its configuration, never silently replacing results, and
every bad setting one line naming the setting and where it came from."""
from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from t3al.adapt import cli as adapt_cli
from t3al.adapt.engine import spec as spec_module
from t3al.adapt import sweep_cli
from t3al.adapt.config import make_config
from t3al.adapt.engine.spec import build_spec, config_hash, run_name
from t3al.adapt.engine.sweep import parse_sweep
from t3al.evaluate.cli import main as evaluate_main
from t3al.manifests import Manifest

from conftest import REPO, write_toy_world

CLASSES = ["Jump", "Throw", "Swim", "Run"]


def _world(tmp_path):
    """Four short videos, one action each; two splits of two unseen classes."""
    actions = {f"v{i}": (120, 30 + 4 * i, 80 + 4 * i, i % 4) for i in range(4)}
    return write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]])


def _adapt(*args):
    return CliRunner().invoke(adapt_cli.main, [str(a) for a in args] + ["--no-progress", "--jobs", "1"])


def _sweep(*args):
    return CliRunner().invoke(sweep_cli.main, [str(a) for a in args] + ["--no-progress", "--jobs", "1"])


def test_a_run_is_named_after_its_method_its_changes_from_the_preset_and_its_hash():
    default = make_config("thumos14")
    assert run_name(default, "thumos14") == f"t3al_{config_hash(default)}"
    t0 = make_config("thumos14", steps=0, suppression=False)
    assert run_name(t0, "thumos14") == f"t3al_steps=0_suppression=off_{config_hash(t0)}"
    assert run_name(t0, "thumos14", seed=3) == f"t3al_steps=0_suppression=off_seed=3_{config_hash(t0, 3)}"
    assert config_hash(t0) != config_hash(default) and config_hash(t0) != config_hash(t0, 3)
    assert run_name(make_config("activitynet"), "activitynet").startswith("t3al_")


def test_two_configurations_under_one_default_root_never_replace_each_other(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    monkeypatch.chdir(tmp_path)
    first = _adapt(cache, "--steps", "0", "--no-suppression")
    second = _adapt(cache, "--steps", "0")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    folders = sorted(p.name for p in (tmp_path / "runs" / "cache" / "75_25").iterdir())
    assert len(folders) == 2 and folders[0].startswith("t3al_steps=0_")
    for folder in folders:
        record = json.loads((tmp_path / "runs" / "cache" / "75_25" / folder / "results.json").read_text())["run"]
        assert record["config"]["suppression"] == ("suppression=off" not in folder)
        assert folder in (first.output if "suppression=off" in folder else second.output)  # the printed row name


def test_a_folder_holding_another_configuration_is_refused_without_overwrite(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    assert _adapt(cache, "--out", out, "--steps", "0").exit_code == 0
    before = (out / "results.json").read_text()
    refused = _adapt(cache, "--out", out, "--steps", "0", "--no-suppression")
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"Error: {out} holds another configuration's results; choose another --out, or pass --overwrite "
        "to replace them")
    assert (out / "results.json").read_text() == before
    replaced = _adapt(cache, "--out", out, "--steps", "0", "--no-suppression", "--overwrite")
    assert replaced.exit_code == 0 and "replaced another configuration's results (--overwrite)" in replaced.output
    assert json.loads((out / "config.json").read_text())["config"]["suppression"] is False


def test_the_same_configuration_rerun_replaces_itself_and_says_so(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    assert _adapt(cache, "--out", out, "--steps", "0").exit_code == 0
    rerun = _adapt(cache, "--out", out, "--steps", "0", "--split-index", "1")
    assert rerun.exit_code == 0 and "replaced the earlier results of the same configuration" in rerun.output
    assert sorted(p.name for p in out.glob("split_*")) == ["split_1"]  # no stale split outlives the rerun


def test_a_folder_of_other_files_is_refused(tmp_path):
    cache = _world(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = _adapt(cache, "--out", tmp_path / "mine", "--steps", "0")
    assert result.exit_code == 1 and "holds files that are not a t3al run" in result.output


def test_sweep_rows_follow_the_same_rule(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    (tmp_path / "rows.toml").write_text('rows = [{name = "T0", steps = 0}, {name = "T1", steps = 1}]')
    monkeypatch.chdir(tmp_path)
    assert _sweep(cache, "--table", "rows.toml").exit_code == 0
    assert _sweep(cache, "--table", "rows.toml", "--radius", "0").exit_code == 0
    assert len(list((tmp_path / "runs" / "cache" / "75_25").glob("sweep-rows_*"))) == 2  # one folder per sweep
    refused = _sweep(cache, "--table", "rows.toml", "--radius", "0", "--k", "3", "--out", tmp_path / "runs" /
                     "cache" / "75_25" / next((tmp_path / "runs" / "cache" / "75_25").glob("sweep-rows_*")).name)
    assert refused.exit_code == 1 and "T0 holds another configuration's results" in refused.output


def test_evaluate_never_replaces_other_results_silently(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    assert _adapt(cache, "--out", out, "--steps", "0").exit_code == 0
    manifest = tmp_path / "manifest.json"
    table = tmp_path / "table.md"
    table_args = ["table", str(out / "results.json"), "--format", "markdown", "-o", str(table)]
    assert CliRunner().invoke(evaluate_main, table_args).exit_code == 0
    assert CliRunner().invoke(evaluate_main, table_args).exit_code == 0  # the same table again
    other = CliRunner().invoke(evaluate_main, [*table_args, "--name", "renamed"])
    assert other.exit_code == 1 and f"{table} holds other results" in other.output
    assert CliRunner().invoke(evaluate_main, [*table_args, "--name", "renamed", "--overwrite"]).exit_code == 0
    setting = ["setting", str(out), "--manifest", str(manifest), "--split", "75_25", "--json", str(tmp_path / "r.json")]
    assert CliRunner().invoke(evaluate_main, [*setting, "--split-index", "0"]).exit_code == 0
    assert CliRunner().invoke(evaluate_main, setting).exit_code == 1


@pytest.mark.parametrize("args, toml, message", [
    (["--k", "1"], None, "Error: command line: k must be a number >= 2, got 1"),
    (["--beta", "2"], None, "Error: command line: beta must be in [-1, 1] (a cosine threshold), got 2.0"),
    (["--lr", "nan"], None, "Error: command line: lr must be a number >= 0.0, got nan"),
    ([], "colour = 1", "Error: {toml}: unknown setting(s) colour"),
    ([], "steps = 2.5", "Error: {toml}: steps must be an integer, got 2.5"),
    ([], "threshold = 'high'", "Error: {toml}: threshold must be a number or 'mean', got 'high'"),
    ([], "remove_background = 'yes'", "Error: {toml}: remove_background must be true or false, got 'yes'"),
    ([], "adapt = 'text'", "Error: {toml}: adapt must be a list of names, got 'text'"),
    ([], "separation = 'none'\nrepresentation = 'none'",
     "Error: {toml}: separation and representation are both 'none': nothing to adapt with"),
    ([], "k = 1", "Error: {toml}: k must be a number >= 2, got 1"),
    (["--split", "60_40"], None, "Error: --split 60_40: the manifest of toy has no such setting (has: 75_25)"),
    (["--split-index", "7"], None, "Error: --split-index 7: setting 75_25 has splits 0..1"),
    (["--jobs", "0"], None, "Error: --jobs must be at least 1, got 0"),
    (["--device", "gpu0"], None, "Error: --device 'gpu0' is not a device; use cpu, cuda or cuda:N"),
    (["--device", "meta"], None, "Error: --device 'meta': stage two runs on cpu or cuda"),
])
def test_every_bad_setting_is_one_line_naming_the_setting_and_its_source(tmp_path, args, toml, message):
    cache = _world(tmp_path)
    if toml is not None:
        (tmp_path / "bad.toml").write_text(toml)
        args = [*args, "--config", tmp_path / "bad.toml"]
    result = CliRunner().invoke(adapt_cli.main, [str(cache), *map(str, args), "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [message.format(toml=tmp_path / "bad.toml")]


def test_the_spec_carries_the_scheduler_and_device_and_leaves_cuda_to_a_clusters_workers(tmp_path):
    cache = _world(tmp_path)
    local = build_spec(cache, device="cpu", scheduler="  ")
    assert (local.execution.device, local.execution.scheduler) == ("cpu", None)
    remote = build_spec(cache, device="cuda:1", scheduler="tcp://10.0.0.1:8786")
    assert (remote.execution.device, remote.execution.scheduler) == ("cuda:1", "tcp://10.0.0.1:8786")


def test_a_bad_row_setting_names_the_sweep_and_row(tmp_path):
    cache = _world(tmp_path)
    (tmp_path / "rows.toml").write_text('rows = [{name = "fine"}, {name = "broken", threshold = "high"}]')
    result = _sweep(cache, "--table", tmp_path / "rows.toml")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: sweep rows, row 'broken': threshold must be a number or 'mean', got 'high'"]


def test_threshold_mean_from_a_config_file_runs(tmp_path):
    cache = _world(tmp_path)
    (tmp_path / "mean.toml").write_text('threshold = "mean"\nsteps = 0')
    result = _adapt(cache, "--preset", "activitynet", "--config", tmp_path / "mean.toml", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "config.json").read_text())["config"]["threshold"] is None


def test_the_spec_is_resolved_once_per_command(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    loads, specs = [], []
    load, build = Manifest.load, spec_module.build_spec
    monkeypatch.setattr(Manifest, "load", staticmethod(lambda path: loads.append(path) or load(path)))
    for module in (adapt_cli, sweep_cli):
        monkeypatch.setattr(module, "build_spec", lambda *a, **k: specs.append(a) or build(*a, **k))
    assert _adapt(cache, "--steps", "0", "--out", tmp_path / "a").exit_code == 0
    assert len(loads) == 1 and len(specs) == 1
    assert _sweep(cache, "--table", "table6", "--steps", "0", "--out", tmp_path / "s").exit_code == 0
    assert len(loads) == 2 and len(specs) == 2


def test_the_benchmarks_build_the_same_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_sweep

    cache = _world(tmp_path)
    specs = []
    monkeypatch.setattr(bench_sweep, "build_spec", lambda *a, **k: specs.append(k) or build_spec(*a, **k))
    monkeypatch.setattr(bench_sweep, "load_sweep", lambda name: parse_sweep(
        'rows = [{name = "T0", steps = 0}, {name = "T1", steps = 1}]', name, name))
    args = bench_sweep.argparse.Namespace(tables=["mine"], split="75_25", indices=[0], jobs=1, separate=False,
                                             device=None)
    bench_sweep.time_sweep(str(cache), args)
    assert len(specs) == 1 and list(specs[0]["rows"]) == ["mine: T0", "mine: T1"]
    assert "mine: T1" in capsys.readouterr().out
    sys.modules.pop("bench_sweep", None)


@pytest.mark.parametrize("command", [adapt_cli.main, sweep_cli.main])
def test_help_shows_each_settings_effective_default_per_preset(command):
    text = " ".join(CliRunner().invoke(command, ["--help"], terminal_width=200).output.split())
    assert "Adaptation steps T (0 with --no-suppression gives T3AL_0). [default: thumos14 60, activitynet 15]" in text
    assert "Positive and negative samples per step (K). [default: thumos14 4, activitynet 20]" in text
    assert "Learning rate of Pt and s. [default: 1e-05]" in text
    assert "[default: thumos14 mean, activitynet 0.7]" in text
    assert "this machine's cores" in text
