"""Presence of each named action in a video, without ground truth: the open-set rule (docs/presence.md).

An action's presence is the model's own two-way probability that the video's best two-second
stretch for the action is better described by the action's prompt than by the best of a shipped
vocabulary of distractor actions at their own best stretches:

    peak(t) = max over frames of the two-second moving average of cos(V @ Pv, T_t @ Pt)
    presence(c) = sigmoid(exp(s) * (peak(c) - max over distractors d of peak(d)))

A difference of cosines of the same frames, in the model's logit units: no similarity value of one
model is built in. Under the open-set rule a video is localized for the actions whose presence
reaches the threshold, and each detection's score becomes presence x segment score.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .ops import l2norm, moving_average
from .video import VideoResult

PEAK_SECONDS = 2.0  # the stretch an action must hold for: about a short instance, far longer than a frame


def peak_window(timestamps: np.ndarray) -> int:
    """Frames in PEAK_SECONDS at the video's mean frame rate (at least 1)."""
    span = float(timestamps[-1] - timestamps[0]) if len(timestamps) > 1 else 0.0
    rate = (len(timestamps) - 1) / span if span > 0 else 1.0
    return max(1, round(rate * PEAK_SECONDS))


@torch.no_grad()
def peak_similarities(features: torch.Tensor, visual_proj: torch.Tensor, text_embeddings: torch.Tensor,
                      window: int) -> torch.Tensor:
    """For each text (K x E, projected), the highest ``window``-frame moving average of its cosine
    with the frames (N x Dv, before projection): (K,)."""
    curves = l2norm(features @ visual_proj) @ l2norm(text_embeddings).T
    return torch.stack([moving_average(curve, window).max() for curve in curves.T])


@torch.no_grad()
def presence(features: torch.Tensor, timestamps: np.ndarray, visual_proj: torch.Tensor,
             text_projection: torch.Tensor, logit_scale: float | torch.Tensor, class_features: torch.Tensor,
             distractor_features: torch.Tensor) -> np.ndarray:
    """Presence in [0, 1] of each class (C x Dt prompt features before projection) in one video,
    against the distractors' prompt features (D x Dt, D >= 1)."""
    if len(distractor_features) == 0:
        raise ValueError("presence needs at least one distractor prompt")
    texts = torch.cat([class_features, distractor_features]) @ text_projection
    peaks = peak_similarities(features, visual_proj, texts, peak_window(timestamps))
    actions, reference = peaks[: len(class_features)], peaks[len(class_features):].max()
    scale = torch.as_tensor(logit_scale, dtype=torch.float64).exp()
    return torch.sigmoid(scale * (actions.double() - reference.double())).numpy()


def present_labels(presences: np.ndarray, threshold: float, count: int) -> list[int]:
    """The classes localized under the open-set rule: those of presence at or above ``threshold``,
    most present first (ties: class order), at most ``count``."""
    order = np.argsort(-np.asarray(presences), kind="stable")
    return [int(c) for c in order if presences[c] >= threshold][:count]


def open_set(result: VideoResult, presences: np.ndarray, threshold: float) -> VideoResult:
    """``result`` under the open-set rule: the segments of labels present at ``threshold``, each
    scored presence x its segment score, and the presences of every class kept with it (a copy)."""
    kept = [i for i, label in enumerate(result.labels) if presences[label] >= threshold]
    return replace(result, segments=[result.segments[i] for i in kept], labels=[result.labels[i] for i in kept],
                   scores=[float(presences[result.labels[i]]) * result.scores[i] for i in kept],
                   presence=np.asarray(presences, dtype=np.float64))
