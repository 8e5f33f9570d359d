"""The online protocol (docs/online.md): causal, chunked, emitted once certain, never revised."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from t3al.adapt.cli import main
from t3al.adapt.config import AdaptConfig, ConfigError, make_config
from t3al.adapt.algorithm.online import OnlineT3AL, localize_online
from t3al.adapt.engine.spec import run_name
from t3al.adapt.algorithm.video import VideoInput
from t3al.cache import CacheInfo, CacheReader, CacheWriter, ModelIdentity
from t3al.manifests import Manifest

from conftest import REPO, synthetic_features, write_tiny_cache

CLASSES = ["Jump", "Throw", "Swim", "Run"]
FPS = 10.0
ONLINE = AdaptConfig(protocol="online", chunk=7, chunk_steps=2, online_window=120)
ACTIONS = ((40, 90, 1), (150, 200, 1), (260, 300, 1), (330, 345, 2))


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A 400-frame video with four actions (noisy, so that curves and scores vary) and its head."""
    features = synthetic_features(n=400, actions=ACTIONS, noise=0.6, seed=3)
    reader = CacheReader(write_tiny_cache(tmp_path_factory.mktemp("online") / "cache", {"v": features}, CLASSES,
                                          fps=FPS, logit_scale=20.0))
    return reader.head(), VideoInput.from_record(reader.video("v"))


def _stream(head, config=ONLINE) -> OnlineT3AL:
    return OnlineT3AL(config, head, torch.from_numpy(head.prompt_features), torch.Generator().manual_seed(5), "v")


def _pieces(video: VideoInput, sizes):
    """The video's frames (and the captions of those frames) in consecutive pieces of the given sizes."""
    start = 0
    for size in sizes:
        stop = min(start + size, video.n_frames)
        inside = (video.caption_frames >= start) & (video.caption_frames < stop)
        yield video.features[start:stop], video.timestamps[start:stop], \
            video.caption_frames[inside].tolist(), video.caption_features[inside]
        start = stop
        if start == video.n_frames:
            return


def _fed(head, video, sizes, config=ONLINE):
    """Stream the video in pieces: the stream and, per piece, (newest time received, new emissions)."""
    stream, log = _stream(head, config), []
    for features, times, frames, captions in _pieces(video, sizes):
        log.append((float(times[-1]), stream.feed(features, times, frames, captions)))
    log.append((float(video.timestamps[-1]), stream.finish()))
    return stream, log


def test_every_detection_is_emitted_after_its_end_from_frames_already_received(cached):
    head, video = cached
    stream, log = _fed(head, video, [3, 11, 1, 30, 17] * 40)
    emitted = [e for _, new in log for e in new]
    assert len(emitted) >= 3
    for newest, new in log:
        for e in new:
            assert e.end <= e.emitted_at <= newest
            assert e.emitted_at in video.timestamps


def test_the_delay_is_bounded_by_stride_smoothing_and_chunk(cached):
    """A segment closes once ``stride`` frames after its end are final, a frame is final half a
    smoothing window after it arrives, and the state is updated once per chunk."""
    head, video = cached
    stream, _ = _fed(head, video, [video.n_frames])
    bound = (ONLINE.stride + ONLINE.window // 2 + ONLINE.chunk - 1) / FPS
    assert stream.emissions and all(e.emitted_at - e.end <= bound + 1e-9 for e in stream.emissions)


def test_how_frames_are_delivered_does_not_change_the_detections(cached):
    head, video = cached
    whole, _ = _fed(head, video, [video.n_frames])
    one_by_one, _ = _fed(head, video, [1] * video.n_frames)
    assert whole.emissions == one_by_one.emissions
    assert whole.curve == one_by_one.curve


def test_a_prefix_gives_what_the_whole_video_gives_up_to_the_prefix_end(cached):
    """No future frame is used: the detections emitted while the first 203 frames are all there
    is, and the curve committed by then, are the same whether or not later frames exist."""
    head, video = cached
    prefix = VideoInput("v", video.features[:203], video.timestamps[:203],
                        video.caption_frames[video.caption_frames < 203],
                        video.caption_features[video.caption_frames < 203])
    whole, _ = _fed(head, video, [video.n_frames])
    cut, log = _fed(head, prefix, [prefix.n_frames])
    before_end = [e for _, new in log[:-1] for e in new]
    assert before_end and before_end == [e for e in whole.emissions if e.emitted_at <= video.timestamps[202]]
    committed = len(cut.curve) - (prefix.n_frames - cut.used + ONLINE.window // 2)  # before finish
    assert cut.curve[:committed] == whole.curve[:committed]


def test_emitted_detections_are_never_revised(cached):
    head, video = cached
    stream, log = _fed(head, video, [13] * 40)
    so_far = []
    for _, new in log:
        so_far += new
        assert stream.emissions[:len(so_far)] == so_far
    result = stream.result()
    assert [(e.first, e.last) for e in so_far] == result.segments
    assert [e.emitted_at for e in so_far] == result.emitted and [e.score for e in so_far] == result.scores


def test_the_adaptation_carries_over_from_chunk_to_chunk(cached):
    head, video = cached
    stream, _ = _fed(head, video, [video.n_frames])
    updates = math.ceil(video.n_frames / ONLINE.chunk)
    assert len(stream.losses) == ONLINE.chunk_steps * updates
    assert not torch.equal(stream.params.text_projection[0].detach(), torch.from_numpy(head.text_projection))
    frozen, _ = _fed(head, video, [video.n_frames], ONLINE.replace(chunk_steps=0))
    assert frozen.losses == [] and torch.equal(frozen.params.text_projection[0].detach(),
                                               torch.from_numpy(head.text_projection))


def test_an_ended_stream_takes_no_more_frames(cached):
    head, video = cached
    stream = _stream(head)
    stream.feed(video.features[:20], video.timestamps[:20])
    stream.finish()
    assert stream.finish() == []
    with pytest.raises(ValueError, match="the stream has ended"):
        stream.feed(video.features[20:30], video.timestamps[20:30])
    with pytest.raises(ValueError, match="before its frame"):
        _stream(head).feed(video.features[:5], video.timestamps[:5], [7], video.caption_features[:1])


def test_localize_online_plays_the_cached_video_as_a_stream(cached):
    head, video = cached
    result = localize_online(video, ONLINE, head, torch.from_numpy(head.prompt_features),
                             torch.Generator().manual_seed(5))
    whole, _ = _fed(head, video, [video.n_frames])
    assert result.segments == [(e.first, e.last) for e in whole.emissions] and len(result.similarity) == 400


@pytest.mark.parametrize("changes, setting", [
    ({"method": "naive"}, "protocol"), ({"scoring": "logoic"}, "protocol"), ({"oracle": ("class",)}, "protocol"),
    ({"labels_per_video": 2}, "labels_per_video"), ({"online_window": 40}, "online_window")])
def test_what_the_online_protocol_cannot_run_is_refused(changes, setting):
    with pytest.raises(ConfigError) as err:
        AdaptConfig(protocol="online", **changes)
    assert err.value.setting == setting


def test_other_protocols_record_no_online_setting():
    assert "chunk" not in make_config("thumos14").to_dict()
    online = make_config("thumos14", protocol="online")
    assert online.to_dict()["chunk"] == 30
    assert run_name(online, "thumos14").startswith("t3al_protocol=online_")
    assert run_name(online.replace(chunk=10), "thumos14").startswith("t3al_protocol=online_chunk=10_")


def _thumos_shaped(tmp_path, videos: int = 5, seconds: float = 60.0) -> tuple:
    """A cache and manifest shaped like THUMOS14's: its 20 class names and 75_25 splits, 30 fps,
    minute-long videos with three instances of one class each, every class of split 0's unseen list."""
    thumos = Manifest.load(REPO / "manifests" / "thumos14.json")
    unseen = thumos.splits["75_25"][0]
    fps, n = 30.0, int(seconds * 30)
    features, annotations, entries = {}, [], {}
    for i in range(videos):
        c = thumos.classes.index(unseen[i % len(unseen)])
        spans = [(int(n * f), int(n * f) + 150) for f in (0.1, 0.45, 0.8)]
        features[f"video_test_{i:07d}"] = synthetic_features(n=n, width=24, actions=[(s, e, c) for s, e in spans],
                                                             seed=i, noise=0.4)
        entries[f"video_test_{i:07d}"] = {"subset": "test", "duration": n / fps, "fps": fps}
        annotations += [{"video": f"video_test_{i:07d}", "start": s / fps, "end": (e - 1) / fps,
                         "label": thumos.classes[c]} for s, e in spans]
    cache = write_tiny_cache(tmp_path / "cache", features, thumos.classes, fps=fps, caption_every=30)
    manifest = Manifest("thumos14-shaped", thumos.classes, entries, annotations, {"75_25": thumos.splits["75_25"]},
                        thumos.tiou)
    manifest.save(tmp_path / "manifest.json")
    CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32")) \
        .attach_manifest(tmp_path / "manifest.json")
    return cache, manifest


def test_online_runs_on_a_thumos14_shaped_cache_with_a_finite_map(tmp_path):
    cache, manifest = _thumos_shaped(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(cache), "--split", "75_25", "--split-index", "0", "--protocol", "online",
                                       "--out", str(out), "--no-progress", "--jobs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert math.isfinite(document["mean"]["avg"]) and document["splits"][0]["map"][0] > 50.0
    assert document["online"]["detections"] > 0 and document["online"]["delay_median_s"] >= 0
    emitted = [json.loads(line) for line in (out / "split_0" / "emitted.jsonl").read_text().splitlines()]
    duration = {v: e["duration"] for v, e in manifest.videos.items()}
    assert emitted and all(e["end"] <= e["emitted_at"] <= duration[e["video"]] for e in emitted)
    written = json.loads((out / "split_0" / "detections.json").read_text())["results"]
    assert sorted((e["video"], e["start"], e["end"], e["label"]) for e in emitted) == sorted(
        (v, d["segment"][0], d["segment"][1], d["label"]) for v, items in written.items() for d in items)
