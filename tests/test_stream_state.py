"""The stream protocol's carried state: the stream is the per-video step run over the videos in order
with one optimiser and one sample generator seeded once, the restore rule applied between videos
(before_last: back to before the video's last step, the logit scale frozen from then on; none:
every update carries over). Pinned against that stream rebuilt by hand, with samples perturbed
(radius > 0), so that re-seeding per video, a fresh optimiser or a swapped rule all show."""
from __future__ import annotations

import pytest
import torch

from t3al.adapt.algorithm.adapter import batch_params, make_optimizer
from t3al.adapt.config import AdaptConfig
from t3al.adapt.algorithm.localizer import T3AL
from t3al.adapt.engine.runner import localize_split
from t3al.adapt.engine.work import single_thread
from t3al.adapt.algorithm.video import VideoInput, VideoResult
from t3al.cache import CacheReader

from conftest import synthetic_features, write_tiny_cache

CLASSES = ["A", "B", "C"]
VIDEOS = ["vid0", "vid1", "vid2"]
SEED = 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    videos = {video_id: synthetic_features(n=160 + 30 * i, actions=((40, 100, i % 3),), seed=i, noise=0.6)
              for i, video_id in enumerate(VIDEOS)}
    return write_tiny_cache(tmp_path_factory.mktemp("stream") / "cache", videos, CLASSES, logit_scale=5.0)


def _config(restore: str) -> AdaptConfig:
    return AdaptConfig(protocol="stream", restore=restore, steps=4, k=3, pool=5, radius=3, lr=1e-2)


def _stream_by_hand(cache, config: AdaptConfig, reseed: bool = False) -> list[VideoResult]:
    """The stream rebuilt from the per-video step (T3AL.localize) and the restore rule (``reseed``: the
    generator wrongly seeded again for each video)."""
    reader = CacheReader(cache)
    head = reader.head()
    params = batch_params(head, config, 1)  # the stream: a batch of one
    optimizer = make_optimizer(params, config)  # one optimiser, its moments carried from video to video
    generator = torch.Generator().manual_seed(SEED)  # seeded once, its draws carried on
    class_features = torch.from_numpy(head.prompt_features[head.prompt_index(CLASSES)])
    label_embeddings = (class_features @ torch.from_numpy(head.text_projection)).detach()
    results = []
    with single_thread():
        for video_id in VIDEOS:
            video = VideoInput.from_record(reader.video(video_id))
            if reseed:
                generator.manual_seed(SEED)
            result, adaptation = T3AL(config).localize(video, params, optimizer, class_features, generator,
                                                       label_embeddings)
            if config.restore == "before_last":
                params.restore_row(0, adaptation.before_last)
                params.logit_scale.requires_grad_(False)
            results.append(result)
    return results


@pytest.mark.parametrize("restore", ["before_last", "none"])
def test_the_stream_is_the_per_video_step_with_its_state_carried_over(cache, restore):
    config = _config(restore)
    stream = localize_split(str(cache), VIDEOS, CLASSES, config, seed=SEED).results
    by_hand = _stream_by_hand(cache, config)
    assert [r.video_id for r in stream] == VIDEOS and all(r.scores for r in stream)
    for ours, theirs in zip(stream, by_hand):
        assert ours.losses == theirs.losses
        assert (ours.pseudo_label, ours.segments, ours.labels, ours.scores) == (
            theirs.pseudo_label, theirs.segments, theirs.labels, theirs.scores)


def test_the_carried_state_changes_the_later_videos(cache):
    """What the test above tells apart: the restore rule and the generator's carried draws each change
    the later videos' losses (the first video's are the same whatever carries over)."""
    restored, carried = _stream_by_hand(cache, _config("before_last")), _stream_by_hand(cache, _config("none"))
    reseeded = _stream_by_hand(cache, _config("before_last"), reseed=True)
    assert restored[0].losses == carried[0].losses == reseeded[0].losses
    for later in (1, 2):
        assert restored[later].losses != carried[later].losses
        assert restored[later].losses != reseeded[later].losses
