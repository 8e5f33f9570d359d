"""Reports: tables in three formats, per-video and per-split PNGs, and the HTML report of an output folder."""
from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_tiny_cache
from t3al.cache import CacheInfo, CacheWriter, ModelIdentity
from t3al.evaluate import Detections, EvaluationError, GroundTruth, format_table
from t3al.evaluate.cli import main
from t3al.evaluate.html import pick_videos, video_ap
from t3al.evaluate.results import read_curve
from t3al.manifests import Manifest

TIOUS = [0.3, 0.5]


def _write_curve(path: Path, pseudo: str, segments: list, labels: list) -> None:
    t = np.arange(0, 30, 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, timestamps=t, similarity=np.exp(-((t - 12) / 4) ** 2), pseudo_label=np.array(pseudo),
                        segments=np.asarray(segments, dtype=float).reshape(-1, 2), labels=np.array(labels, dtype=str),
                        scores=np.linspace(1, 0.5, len(labels)))


@pytest.fixture
def out_dir(tmp_path) -> tuple[Path, Path]:
    """A t3al-adapt output folder of two splits, written by hand in the documented layout."""
    manifest = Manifest("toy", ["Jump", "Swim"], {"v1": {"subset": "test", "duration": 30.0, "fps": 2.0},
                                                  "v2": {"subset": "test", "duration": 30.0, "fps": 2.0}},
                        [{"video": "v1", "start": 8.0, "end": 16.0, "label": "Jump"},
                         {"video": "v2", "start": 2.0, "end": 6.0, "label": "Swim"}],
                        {"75_25": [["Jump"], ["Swim", "Jump"]]}, TIOUS)
    manifest.save(tmp_path / "m.json")
    out = tmp_path / "out"
    splits = []
    for i, classes in enumerate(manifest.splits["75_25"]):
        _write_curve(out / f"split_{i}" / "curves" / "v1.npz", "Jump", [[9.0, 15.5], [20, 22]], ["Jump", "Jump"])
        if i == 1:
            _write_curve(out / f"split_{i}" / "curves" / "v2.npz", "Swim", [], [])
        splits.append({"index": i, "classes": classes, "map": [80.0, 50.0], "avg": 65.0,
                       "per_class": {c: [80.0, 50.0] for c in classes}, "n_videos": 1 + i, "n_detections": 2})
    (out / "results.json").write_text(json.dumps({
        "setting": "75_25", "tiou": TIOUS, "splits": splits,
        "mean": {"map": [80.0, 50.0], "avg": 65.0}, "std": {"map": [0.0, 0.0], "avg": 0.0}}))
    (out / "config.json").write_text(json.dumps({"method": "t3al"}))
    return out, tmp_path / "m.json"


def test_report_writes_html_linking_valid_pngs(out_dir):
    out, manifest = out_dir
    result = CliRunner().invoke(main, ["report", str(out), "--manifest", str(manifest), "--plots", "5"])
    assert result.exit_code == 0, result.output
    page = (out / "report" / "index.html").read_text()
    pngs = sorted((out / "report" / "img").rglob("*.png"))
    assert [p.relative_to(out / "report").as_posix() for p in pngs] == [
        "img/split_0/v1.png", "img/split_0_ap.png", "img/split_1/v1.png", "img/split_1/v2.png", "img/split_1_ap.png"]
    for png in pngs:
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f'href="{png.relative_to(out / "report").as_posix()}"' in page
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "mean ± std" in page and "Swim, Jump" in page and "{&#34;method&#34;: &#34;t3al&#34;}" in page  # config.json, escaped


def test_report_without_manifest_says_ground_truth_is_missing(out_dir):
    out, _ = out_dir
    result = CliRunner().invoke(main, ["report", str(out), "--plots", "1", "--html", str(out / "r.html")])
    assert result.exit_code == 0, result.output
    assert "ground-truth segments are not shown" in (out / "r.html").read_text()
    assert len(list((out / "img").rglob("*.png"))) == 4  # two bar charts, one video per split


def test_report_without_manifest_uses_the_one_in_the_runs_cache(out_dir, tmp_path):
    out, manifest = out_dir
    cache = write_tiny_cache(tmp_path / "cache", {"v1": np.zeros((4, 2), np.float32)}, ["Jump", "Swim"])
    CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32")) \
        .attach_manifest(manifest)
    (out / "config.json").write_text(json.dumps({"method": "t3al", "cache": {"path": str(cache)}}))
    result = CliRunner().invoke(main, ["report", str(out), "--plots", "1"])
    assert result.exit_code == 0, result.output
    assert f"manifest: {cache / 'manifest.json'}" in result.output
    page = (out / "report" / "index.html").read_text()
    assert "ground-truth segments are not shown" not in page


def test_report_of_a_folder_without_results_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "results.json: not found" in result.output


def test_curve_with_missing_array_names_the_file(tmp_path):
    np.savez(tmp_path / "v.npz", timestamps=np.arange(3.0))
    with pytest.raises(EvaluationError, match="v.npz: missing array\\(s\\) similarity"):
        read_curve(tmp_path / "v.npz")


def test_table_formats_agree_on_figures():
    rows = {"T3AL": {"tiou": TIOUS, "mean": {"map": [12.345, 6.0], "avg": 9.1725},
                     "std": {"map": [1.0, 0.5], "avg": 0.75}},
            "T=0": {"tiou": TIOUS, "map": [5.0, 2.0], "avg": 3.5}}
    terminal = format_table(rows).splitlines()
    assert terminal[0].split() == ["method", "mAP@0.3", "mAP@0.5", "Avg"]
    assert terminal[2].split() == ["T3AL", "12.35", "±", "1.00", "6.00", "±", "0.50", "9.17", "±", "0.75"]
    assert "| T=0 | 5.00 | 2.00 | 3.50 |" in format_table(rows, "markdown")
    assert "T3AL,12.3450,1.0000,6.0000,0.5000,9.1725,0.7500" in format_table(rows, "csv")
    assert "<td>12.35 ± 1.00</td>" in format_table(rows, "html")


def test_table_rows_with_different_thresholds_are_an_error():
    rows = {"a": {"tiou": [0.3], "map": [1.0], "avg": 1.0}, "b": {"tiou": [0.5], "map": [1.0], "avg": 1.0}}
    with pytest.raises(EvaluationError, match="row 'b' has thresholds"):
        format_table(rows)


@pytest.mark.parametrize("index", ["<script>alert(1)</script>", "/../../x", -1, 1.5, True])
def test_report_refuses_a_split_index_that_is_not_a_number(out_dir, tmp_path, index):
    out, manifest = out_dir
    document = json.loads((out / "results.json").read_text())
    document["splits"][0]["index"] = index
    (out / "results.json").write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["report", str(out), "--manifest", str(manifest)])
    assert result.exit_code == 1 and "split index must be a non-negative integer" in result.output
    assert not (out / "report").exists() and not list(tmp_path.rglob("x*.png"))


def test_report_escapes_every_text_it_takes_from_the_results(out_dir):
    out, _ = out_dir
    evil = "<img src=x onerror=alert(1)>"
    document = json.loads((out / "results.json").read_text())
    document["setting"] = evil
    split = document["splits"][1]
    split.update(classes=[evil, "Jump"], n_videos=evil, n_detections=evil,
                 per_class={evil: [10.0, 5.0], "Jump": [80.0, 50.0]})
    (out / "results.json").write_text(json.dumps(document))
    (out / "split_1" / "curves" / "v2.npz").rename(out / "split_1" / "curves" / f"{evil}.npz")
    result = CliRunner().invoke(main, ["report", str(out), "--plots", "5"])
    assert result.exit_code == 0, result.output
    page = (out / "report" / "index.html").read_text()
    assert evil not in page and page.count(html.escape(evil)) >= 5
    assert all(p.resolve().is_relative_to((out / "report").resolve()) for p in out.rglob("*.png"))


def test_videos_are_picked_evenly_over_the_ranking_by_ap():
    ap = {"a": 90.0, "b": 10.0, "c": 50.0, "d": 70.0, "e": 30.0}
    assert pick_videos(ap, 3) == [("a", "best"), ("c", "median"), ("b", "worst")]
    assert pick_videos(ap, 1) == [("c", "median")]
    assert pick_videos(ap, 2) == [("a", "best"), ("b", "worst")]
    assert [v for v, _ in pick_videos(ap, 9)] == ["a", "d", "c", "e", "b"]
    assert pick_videos(ap, 0) == [] and pick_videos({}, 3) == []


def test_video_ap_scores_each_video_on_its_own_true_classes():
    truth = GroundTruth.from_records([{"video": "hit", "start": 0.0, "end": 10.0, "label": "Jump"},
                                      {"video": "miss", "start": 0.0, "end": 10.0, "label": "Swim"}])
    detections = Detections.from_records([{"video": "hit", "start": 0.0, "end": 10.0, "score": 0.9, "label": "Jump"},
                                          {"video": "miss", "start": 20.0, "end": 30.0, "score": 0.9, "label": "Swim"},
                                          {"video": "miss", "start": 0.0, "end": 10.0, "score": 0.8, "label": "Jump"}])
    assert video_ap(detections, truth, TIOUS) == {"hit": 100.0, "miss": 0.0}


def test_report_plots_best_median_and_worst_video_and_says_which_rule(tmp_path):
    videos = {"v1": 8.0, "v2": 4.0, "v3": 0.0}  # a detection of [2, 10] s scores v1 best, v3 worst
    manifest = Manifest("toy", ["Jump"], {v: {"subset": "test", "duration": 30.0, "fps": 2.0} for v in videos},
                        [{"video": v, "start": start, "end": 10.0, "label": "Jump"} for v, start in videos.items()],
                        {"75_25": [["Jump"]]}, TIOUS)
    out = tmp_path / "out"
    for v in [*videos, "v4"]:
        _write_curve(out / "split_0" / "curves" / f"{v}.npz", "Jump", [[2.0, 10.0]], ["Jump"])
    Detections.from_records([{"video": v, "start": 2.0, "end": 10.0, "score": 0.9, "label": "Jump"}
                             for v in videos]).write_json(out / "split_0" / "detections.json")
    (out / "results.json").write_text(json.dumps({
        "setting": "75_25", "tiou": TIOUS, "splits": [{"index": 0, "classes": ["Jump"], "map": [1.0, 1.0], "avg": 1.0,
                                                       "per_class": {"Jump": [1.0, 1.0]}}],
        "mean": {"map": [1.0, 1.0], "avg": 1.0}, "std": {"map": [0.0, 0.0], "avg": 0.0}}))
    manifest.save(tmp_path / "m.json")
    assert CliRunner().invoke(main, ["report", str(out), "-m", str(tmp_path / "m.json"), "--plots", "3"]).exit_code == 0
    page = (out / "report" / "index.html").read_text()
    assert "spread over the ranking by per-video AP" in page
    assert [p.stem for p in sorted((out / "report" / "img" / "split_0").glob("*.png"))] == ["v1", "v2", "v3"]
    assert CliRunner().invoke(main, ["report", str(out), "-m", str(tmp_path / "m.json"), "--plot-videos", "v4",
                                     "--html", str(tmp_path / "r" / "index.html")]).exit_code == 0
    assert "the videos listed with --plot-videos" in (tmp_path / "r" / "index.html").read_text()
    assert [p.stem for p in (tmp_path / "r" / "img" / "split_0").glob("*.png")] == ["v4"]


def test_a_report_of_another_folder_is_not_replaced_without_overwrite(out_dir, tmp_path):
    out, manifest = out_dir
    page = tmp_path / "page.html"
    assert CliRunner().invoke(main, ["report", str(out), "--html", str(page), "--plots", "0"]).exit_code == 0
    assert CliRunner().invoke(main, ["report", str(out), "--html", str(page), "--plots", "0"]).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text((out / "results.json").read_text())
    refused = CliRunner().invoke(main, ["report", str(other), "--html", str(page)])
    assert refused.exit_code == 1 and f"{page} holds another report" in refused.output
    assert CliRunner().invoke(main, ["report", str(other), "--html", str(page), "--overwrite"]).exit_code == 0


def test_a_failed_report_leaves_no_report_folder_behind(out_dir):
    out, manifest = out_dir
    (out / "split_1" / "curves" / "v2.npz").write_bytes(b"not a zip")  # read after split 0's plots
    result = CliRunner().invoke(main, ["report", str(out), "--manifest", str(manifest)])
    assert result.exit_code == 1 and "v2.npz: not a readable .npz" in result.output
    assert not (out / "report").exists()


def test_a_report_into_a_read_only_folder_is_one_line_before_any_plot(out_dir, monkeypatch):
    from t3al.evaluate import html as html_module

    out, manifest = out_dir
    (out / "report").mkdir()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(kwargs.get("dir")))

    def no_plot(*args, **kwargs):
        raise AssertionError("plotted")

    monkeypatch.setattr(html_module.tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(html_module, "plot_class_ap", no_plot)
    result = CliRunner().invoke(main, ["report", str(out), "--manifest", str(manifest)])
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"t3al-evaluate: error: {out / 'report' / 'index.html'}: cannot write the report (Read-only file system); "
        "nothing was left behind"]
    assert sorted(p.name for p in (out / "report").iterdir()) == []
