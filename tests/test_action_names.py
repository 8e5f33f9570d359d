"""Action names read as the user meant them (issue 25): comments, quotes, control characters,
invisible names, and prompts longer than the text tower reads."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.cache import CacheReader
from t3al.localize.actions import ActionsError, parse_actions
from t3al.localize.cli import main
from t3al.manifests import ManifestError, read_class_list

COCA = "t3al_test_tiny_coca"


def test_comment_lines_of_an_actions_file_are_not_actions(tmp_path):
    (tmp_path / "names.txt").write_text("# my actions\npole vault\n  # high jump, later\nhigh jump\n")
    assert parse_actions(file=tmp_path / "names.txt").names == ["pole vault", "high jump"]


def test_a_quoted_name_keeps_its_commas_as_in_the_file_form(tmp_path):
    assert parse_actions('"pick up, put down", run').names == ["pick up, put down", "run"]
    (tmp_path / "names.txt").write_text("pick up, put down\nrun\n")
    assert parse_actions(file=tmp_path / "names.txt").names == ["pick up, put down", "run"]


@pytest.mark.parametrize("name, problem", [
    ("jump\0high", r"'jump\\x00high' holds a control character \(U\+0000\)"),
    ("\u200b\u200c", r"'\\u200b\\u200c' has no visible character"),
    ("\u2060 \ufeff", r"'\\u2060 \\ufeff' has no visible character"),
])
def test_control_characters_and_invisible_names_are_refused(tmp_path, name, problem):
    with pytest.raises(ActionsError, match=f"action name {problem}"):
        parse_actions(f"run, {name}")
    (tmp_path / "classes.txt").write_text(f"run\n{name}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=f"class name {problem}"):
        read_class_list(tmp_path / "classes.txt")


def test_comments_quotes_and_bad_names_through_the_command_line(tmp_path):
    videos = {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1)}
    cache = write_tiny_cache(tmp_path / "cache", videos, ["pick up, put down", "run"], distractors=True)
    (tmp_path / "names.txt").write_text("# comment\nrun\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [str(cache), "--actions", '"pick up, put down"', "--actions-file",
                                       str(tmp_path / "names.txt"), "--out", str(out), "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["vocabulary"] == ["pick up, put down", "run"]
    (tmp_path / "bad.txt").write_bytes(b"run\nju\0mp\n")
    bad = CliRunner().invoke(main, [str(cache), "--actions-file", str(tmp_path / "bad.txt"), "--out",
                                    str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "action name 'ju\\x00mp' holds a control character (U+0000)" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "bad").exists()
    stored = CacheReader(cache).head().class_names  # the two names, then the open set's distractors
    assert stored[:2] == ["pick up, put down", "run"] and "# comment" not in stored and "ju\0mp" not in stored


def test_names_whose_prompts_the_text_tower_would_cut_are_refused_before_stage_one_writes(models, tmp_path):
    from extract_helpers import make_video

    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "a.mp4", frames=10, rate="10")
    model_folder, checkpoints = models
    names = ["跳" * 60 + "高", "跳" * 60 + "远"]  # identical within the first 76 tokens
    result = CliRunner().invoke(main, [str(folder), "--actions", ", ".join(names), "--cache", str(tmp_path / "cache"),
                                       "--model", COCA, "--pretrained", str(checkpoints[COCA]), "--model-config",
                                       str(model_folder), "--extract-device", "cpu", "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"class name '{names[0][:60]}'...: its prompt is " in result.output
    assert "tokens and the text tower reads 76; shorten it (and 1 more)" in result.output
    assert not (tmp_path / "cache").exists()
