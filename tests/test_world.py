"""The generated video world: deterministic by seed, a valid manifest, ground truth that fits the videos."""
from __future__ import annotations

import json
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from t3al.demo.scenes import ACTIONS
from t3al.demo.world import (build_captions, caption_at, frame_times, generate_world, iter_frames, label_at,
                             plan_world, prompt_words)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=3, n_videos=4, n_classes=4, durations=(10.0, 16.0))
    return root


def _decoded_frame_count(path) -> int:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return len(raw) // (96 * 96 * 3)


def test_same_seed_gives_the_same_plans_and_frames():
    first, second = plan_world(5, 4, n_classes=4), plan_world(5, 4, n_classes=4)
    assert first == second
    a, b = list(iter_frames(first[0])), list(iter_frames(second[0]))
    assert len(a) == len(b) == len(frame_times(first[0])) > 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_different_seeds_give_different_worlds():
    assert plan_world(5, 4, n_classes=4) != plan_world(6, 4, n_classes=4)


def test_same_seed_gives_identical_files(tmp_path, world):
    generate_world(tmp_path, seed=3, n_videos=4, n_classes=4, durations=(10.0, 16.0))
    for name in ("manifest.json", "captions.json"):
        assert (tmp_path / name).read_bytes() == (world / name).read_bytes()
    videos = sorted((world / "videos").glob("*.mp4"))
    assert [v.name for v in sorted((tmp_path / "videos").glob("*.mp4"))] == [v.name for v in videos] and len(videos) == 4
    for video in videos:
        assert (tmp_path / "videos" / video.name).read_bytes() == video.read_bytes()


def test_manifest_has_the_shared_format(world):
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["format"] == "t3al-manifest" and manifest["version"] == 1
    assert manifest["classes"] == ["BallBounce", "SquareSpin", "TriangleSlide", "RingPulse"]
    assert set(manifest["videos"]) == {p.stem for p in (world / "videos").glob("*.mp4")}
    assert {a["label"] for a in manifest["annotations"]} <= set(manifest["classes"])
    assert [len(s) for s in manifest["splits"]["75_25"]] == [1] * 10
    assert [len(s) for s in manifest["splits"]["50_50"]] == [2] * 10


def test_annotations_lie_inside_their_videos(world):
    manifest = json.loads((world / "manifest.json").read_text())
    for ann in manifest["annotations"]:
        assert 0 < ann["start"] < ann["end"] <= manifest["videos"][ann["video"]]["duration"]


def test_videos_have_the_declared_frame_count(world):
    manifest = json.loads((world / "manifest.json").read_text())
    for video_id, info in manifest["videos"].items():
        expected = round(info["duration"] * info["fps"])
        assert _decoded_frame_count(world / "videos" / f"{video_id}.mp4") == expected


def test_split_lists_hold_seen_and_unseen_classes(world):
    manifest = json.loads((world / "manifest.json").read_text())
    folder = world / "splits" / "train_75_test_25" / "t3al-world"
    unseen = (folder / "test" / "split_4.list").read_text().split()
    seen = (folder / "train" / "split_4.list").read_text().split()
    assert unseen == manifest["splits"]["75_25"][4]
    assert sorted(seen + unseen) == sorted(manifest["classes"])


def test_captions_name_the_action_only_while_it_acts():
    spec = plan_world(1, 2, n_classes=2)[0]
    inst = spec.instances[0]
    assert label_at(spec, (inst.start + inst.end) / 2) == inst.label
    assert "resting" not in caption_at(spec, (inst.start + inst.end) / 2)
    assert label_at(spec, inst.start - 0.01) is None


def test_caption_runs_cover_every_frame():
    spec = plan_world(2, 2, n_classes=2)[0]
    runs = build_captions([spec])[spec.video_id]
    covered = [i for run in runs for i in range(run["first"], run["last"] + 1)]
    assert covered == list(range(len(frame_times(spec))))


def test_class_names_become_prompt_words():
    assert prompt_words("BallBounce") == "Ball Bounce"
    assert prompt_words("TriangleSlide") == "Triangle Slide"


def test_every_class_has_ground_truth_even_in_a_tiny_world():
    specs = plan_world(99, 4, n_classes=4, durations=(10.0, 14.0))
    assert {inst.label for spec in specs for inst in spec.instances} == {
        "BallBounce", "SquareSpin", "TriangleSlide", "RingPulse"}


def test_fewer_videos_than_classes_is_an_error():
    with pytest.raises(ValueError, match="at least 5"):
        plan_world(0, 3, n_classes=5)


def test_two_action_worlds_alternate_a_second_action_and_leave_the_published_world_as_it_was():
    from t3al.demo.world import plan_world

    one = plan_world(2026, 24)
    assert plan_world(2026, 24, two_actions=0.0) == one
    two = plan_world(2026, 24, two_actions=1.0)
    names = [a.name for a in ACTIONS]
    drawn_mains = [names[c] for c in np.random.default_rng(2026).permutation(24) % 12]  # as plan_world draws them
    for before, after, main in zip(one, two, drawn_mains):
        assert [(i.start, i.end) for i in before.instances] == [(i.start, i.end) for i in after.instances]
        labels = [i.label for i in before.instances]
        mains = [k for k, label in enumerate(labels) if label == main]
        changed = [k for k, (b, a) in enumerate(zip(before.instances, after.instances)) if b.label != a.label]
        assert changed == mains[1::2]  # the 2nd, 4th, ... instance of the main action
        assert len({after.instances[k].label for k in changed} | {main}) == (2 if changed else 1)
    assert sum(len({i.label for i in spec.instances}) >= 2 for spec in two) >= 12
