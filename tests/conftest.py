"""Shared fixtures: the read-only data folder (../shared or $T3AL_SHARED) and tiny caches."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from t3al.cache import CacheInfo, CacheWriter, Head, ModelIdentity, VideoRecord

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder; skipped when absent, but a failure when T3AL_SHARED is set (CI)."""
    configured = os.environ.get("T3AL_SHARED")
    path = Path(configured) if configured else REPO.parent / "shared"
    if not path.is_absolute():
        path = (REPO / path).resolve()
    if not (path / "data").is_dir():
        message = f"shared data folder not found at {path}"
        if configured:
            pytest.fail(f"T3AL_SHARED is set but {message}")
        pytest.skip(f"{message}; set T3AL_SHARED to run the tests that use real data")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny open_clip configs of ``extract_helpers`` with saved random weights: (folder, checkpoints)."""
    from extract_helpers import write_tiny_models

    folder = tmp_path_factory.mktemp("models")
    return folder, write_tiny_models(folder)


def write_tiny_cache(root: Path, videos: dict[str, np.ndarray], classes: list[str], seed: int = 0,
                     fps: float = 10.0, caption_every: int = 5, logit_scale: float = 100.0,
                     distractors: bool = False) -> Path:
    """A cache with identity projections (Dv = Dt = E = width) and the given per-video features.

    Prompt features are one-hot rows, so frame features can be built by hand to point at a class;
    ``logit_scale`` is exp(s): at 100 class probabilities are 0 or 1, a few units spread them.
    ``distractors`` adds the open-set rule's distractor prompts, all pointing half-way between the
    last two axes (synthetic_features' background is the last): a class the frames point at beats
    them, one they never point at does not.
    """
    from t3al.adapt.algorithm.distractors import DISTRACTORS

    rng = np.random.default_rng(seed)
    width = next(iter(videos.values())).shape[1] if videos else len(classes)
    writer = CacheWriter(root, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    prompts = np.zeros((len(classes), width), dtype=np.float32)
    prompts[np.arange(len(classes)), np.arange(len(classes)) % width] = 1.0
    names = list(classes)
    if distractors:
        extra = np.zeros((len(DISTRACTORS), width), dtype=np.float32)
        extra[:, width - 2:] = np.sqrt(0.5)
        prompts, names = np.concatenate([prompts, extra]), names + list(DISTRACTORS)
    writer.write_head(Head(
        visual_proj=np.eye(width, dtype=np.float32),
        text_projection=np.eye(width, dtype=np.float32),
        logit_scale=np.log(logit_scale),
        class_names=names,
        prompts=[f"a video of action {c}" for c in names],
        prompt_features=prompts,
    ))
    for video_id, features in videos.items():
        n = features.shape[0]
        frames = np.arange(0, n, caption_every)
        writer.write_video(VideoRecord(
            video_id=video_id,
            features=features,
            timestamps=np.arange(n) / fps,
            fps=fps,
            caption_frames=frames,
            caption_texts=[f"caption {i}" for i in frames],
            caption_features=features[frames] + 0.01 * rng.standard_normal((len(frames), width)),
            duration=n / fps,
        ))
    return root


def synthetic_features(n: int = 300, width: int = 8, actions: tuple = ((100, 180, 1),), seed: int = 0,
                       noise: float = 0.3) -> np.ndarray:
    """Frame features that point at class ``c`` on frames [start, end) and elsewhere at a shared
    background direction (the last axis), with ``noise`` (std); with write_tiny_cache's one-hot
    prompts the true class of a frame is readable by eye."""
    rng = np.random.default_rng(seed)
    features = noise * rng.standard_normal((n, width)).astype(np.float32)
    features[:, width - 1] += 1.0
    for start, end, c in actions:
        features[start:end, c] += 2.0
    return features


def write_toy_world(root: Path, classes: list[str], actions: dict[str, tuple[int, int, int, int]],
                    splits: list[list[str]], fps: float = 10.0, broken: str | None = None,
                    noise: float = 0.3, logit_scale: float = 100.0, distractors: bool = False) -> Path:
    """A cache and its attached manifest: video -> (frames, action start, action end, class index).

    Each video holds one action on frames [start, end) (ground truth in seconds), splits are the
    75_25 setting's unseen-class lists; ``broken`` names a video given one NaN feature; ``noise``
    and ``logit_scale`` as in synthetic_features and write_tiny_cache (more noise and a smaller
    scale give spread scores, which tests comparing two paths' scores need); ``distractors`` as in
    write_tiny_cache.
    """
    from t3al.manifests import Manifest

    videos, annotations = {}, []
    for seed, (video_id, (n, start, end, c)) in enumerate(actions.items()):
        videos[video_id] = synthetic_features(n=n, actions=((start, end, c),), seed=seed, noise=noise)
        annotations.append({"video": video_id, "start": start / fps, "end": (end - 1) / fps, "label": classes[c]})
    if broken:
        videos[broken][5] = np.nan
    cache = write_tiny_cache(root / "cache", videos, classes, fps=fps, logit_scale=logit_scale, distractors=distractors)
    manifest = Manifest("toy", classes, {v: {"subset": "test", "duration": actions[v][0] / fps, "fps": fps}
                                         for v in videos}, annotations, {"75_25": splits}, [0.3, 0.5, 0.7])
    manifest.save(root / "manifest.json")
    CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32")) \
        .attach_manifest(root / "manifest.json")
    return cache


def score_spread(scores: list[float]) -> tuple[int, float]:
    """How many distinct values (to 1e-6) and what standard deviation a list of scores has:
    two paths' scores compared say something only when these are large."""
    values = np.asarray(scores, dtype=np.float64)
    return len(np.unique(np.round(values, 6))), float(values.std())
