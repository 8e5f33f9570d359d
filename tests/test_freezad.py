"""FreeZAD's scoring and AdaZAD's positives (docs/freezad.md) on inputs small enough to check by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t3al.adapt.config import ConfigError, make_config, method_values
from t3al.adapt.algorithm.freezad import (
    actionness,
    freezad_scores,
    log_weights,
    logoic,
    outer_windows,
    peak_positives,
    peak_samples,
)
from t3al.adapt.algorithm.ops import select_samples
from t3al.manifests import dataset_rules

LN2, LN3, LN6 = math.log(2), math.log(3), math.log(6)


def test_log_weights_are_normalised_inverse_logs():
    assert log_weights(0).size == 0
    np.testing.assert_allclose(log_weights(1), [1.0])
    np.testing.assert_allclose(log_weights(2), [LN3 / LN6, LN2 / LN6])  # (1/ln2, 1/ln3) / their sum
    three = np.array([1 / LN2, 1 / LN3, 1 / math.log(4)])
    np.testing.assert_allclose(log_weights(3), three / three.sum())


@pytest.mark.parametrize("first, last, n, left, right", [
    (10, 20, 100, (7, 10), (20, 22)),  # L = 10: int(7.5) = 7 before, int(22.5) = 22 after
    (0, 4, 5, (0, 0), (4, 5)),  # at the video's start: empty left side; right clipped to the video
    (1, 11, 100, (0, 1), (11, 13)),  # int(1 - 2.5) = -1, clipped to frame 0
    (5, 6, 100, (4, 5), (6, 6)),  # L = 1: int(4.75) = 4 gives one frame before, int(6.25) = 6 none after
    (90, 100, 100, (87, 90), (100, 100)),  # at the video's end: empty right side
    (0, 8, 8, (0, 0), (8, 8)),  # the whole video: both sides empty
])
def test_outer_windows_are_a_quarter_of_the_segment_clipped_to_the_video(first, last, n, left, right):
    before, after = outer_windows(first, last, n)
    assert (before.start, before.stop) == left and (after.start, after.stop) == right


def test_logoic_of_a_ramp():
    h = np.arange(12, dtype=np.float64)
    # segment frames 4..7, L = 4: one outer frame each side (h[3] = 3, h[8] = 8), weight 1 each
    assert logoic(h, 4, 8) == pytest.approx(5.5 + 7 - 0.2 * (3 + 8))


def test_logoic_puts_the_largest_weight_next_to_the_segment_on_both_sides():
    h = np.ones(20)
    h[2], h[3], h[12], h[13] = 10.0, 20.0, 40.0, 0.0  # L = 8: frames 2-3 before, 12-13 after
    w1, w2 = LN3 / LN6, LN2 / LN6
    assert logoic(h, 4, 12) == pytest.approx(1 + 1 - 0.2 * (20 * w1 + 10 * w2 + 40 * w1))


def test_logoic_without_outer_frames_is_mean_plus_max():
    h = np.array([1.0, 2.0, 6.0])
    assert logoic(h, 0, 3) == pytest.approx(3.0 + 6.0)


def _fft_actionness(segment: np.ndarray) -> float:
    """docs/freezad.md's definition: sigmoid of the mean over dimensions of the FFT power over time."""
    power = np.abs(np.fft.fft(segment.astype(np.float64), axis=0)) ** 2
    return 1.0 / (1.0 + math.exp(-power.sum(axis=0).mean()))


def test_actionness_by_parseval_by_hand():
    assert actionness(torch.full((2, 4), 0.5)) == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-15)  # (2/4) * 2
    assert actionness(torch.full((1, 8), 0.1)) == pytest.approx(1 / (1 + math.exp(-0.01)), abs=1e-9)


@pytest.mark.parametrize("length, scale", [(1, 0.05), (1, 0.3), (3, 0.1), (7, 0.05), (10, 1.0), (40, 2.0)])
def test_actionness_by_parseval_equals_the_fft_form(length, scale):
    segment = scale * np.random.default_rng(length).standard_normal((length, 8)).astype(np.float32)
    value = actionness(torch.from_numpy(segment))
    assert value == pytest.approx(_fft_actionness(segment), abs=1e-12)
    if scale * scale * length * length < 1:
        assert value < 0.99  # short, small segments do not saturate


def test_actionness_saturates_at_exactly_one_on_long_segments():
    assert actionness(torch.ones(40, 8)) == 1.0


def test_freezad_scores_are_logoic_times_actionness():
    h = torch.arange(12, dtype=torch.float32)
    residual = torch.zeros(12, 4)
    residual[4:8] = 0.25  # L = 4, E = 4: argument (4 / 4) * 4 * 4 * 0.0625 = 1
    residual[9:11] = 10.0
    scores = freezad_scores(h, residual, [(4, 8), (9, 11)])
    assert scores[0] == pytest.approx((5.5 + 7 - 0.2 * (3 + 8)) / (1 + math.exp(-1.0)))
    assert scores[1] == pytest.approx(9.5 + 10 - 0.2 * 8)  # h[8] before, none after (int(11.5) = 11); saturated


def _peaked(n: int, at: int) -> torch.Tensor:
    """A curve whose maximum is at frame ``at``, falling off equally on both sides."""
    return -torch.abs(torch.arange(n, dtype=torch.float32) - at)


@pytest.mark.parametrize("k, expected", [(2, [9, 10]), (3, [9, 10, 11]), (4, [8, 9, 10, 11])])
def test_deterministic_peak_positives_are_the_nearest_frames_ties_to_the_earlier(k, expected):
    assert peak_positives(_peaked(40, 10), k, 15, draw=False).tolist() == expected


def test_peak_window_is_clipped_to_the_video_and_repeated_when_short():
    assert peak_positives(_peaked(40, 0), 4, 15, draw=False).tolist() == [0, 1, 2, 3]
    assert peak_positives(_peaked(3, 1), 4, 15, draw=False).tolist() == [0, 0, 1, 1]
    assert peak_positives(_peaked(40, 20), 4, 1, draw=False).tolist() == [19, 19, 20, 20]  # window 19..21 < K


def test_drawn_peak_positives_are_distinct_frames_of_the_window():
    positives = peak_positives(_peaked(200, 100), 8, 15, draw=True, generator=torch.Generator().manual_seed(0))
    assert len(set(positives.tolist())) == 8 and ((positives >= 85) & (positives <= 115)).all()
    again = peak_positives(_peaked(200, 100), 8, 15, draw=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(positives, again)


def test_peak_negatives_are_t3als_negatives():
    sim = torch.from_numpy(np.random.default_rng(0).standard_normal(500).astype(np.float32))
    _, negatives = peak_samples(sim, 4, 10, 15, radius=0)
    assert torch.equal(negatives, select_samples(sim, 4, 10, radius=0)[1])


def test_named_methods_set_the_published_settings_per_dataset():
    freezad = make_config("thumos14", method="freezad")
    assert (freezad.steps, freezad.suppression, freezad.scoring, freezad.window, freezad.stride) == (
        0, False, "logoic", 20, 20)
    assert freezad.normalize and freezad.remove_background and freezad.threshold is None
    anet = make_config("activitynet", method="freezad")
    assert (anet.steps, anet.window, anet.stride, anet.threshold) == (0, 0, 150, 0.7)
    assert not anet.normalize and not anet.remove_background
    t0 = make_config("activitynet", method="t3al0")
    assert (t0.steps, t0.suppression, t0.stride, t0.scoring) == (0, False, 150, "region")
    ada = make_config("thumos14", method="adazad")
    assert (ada.steps, ada.k, ada.positives, ada.restore, ada.scoring, ada.suppression) == (
        60, 4, "peak", "none", "logoic", False)
    assert make_config("activitynet", method="adazad").steps == 15


def test_the_method_is_a_layer_between_the_preset_and_every_later_source(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text("stride = 7\n")
    config = make_config("activitynet", mine, [("command line", {"method": "freezad", "window": 3})])
    assert (config.method, config.stride, config.window, config.threshold) == ("freezad", 7, 3, 0.7)
    row = make_config("thumos14", layers=[("command line", {"method": "freezad"}), ("row 'T3AL'", {"method": "t3al"})])
    assert (row.method, row.steps, row.scoring) == ("t3al", 60, "region")  # the last layer naming a method wins
    with pytest.raises(ConfigError, match="^row 'x': method must be one of"):
        make_config(layers=[("row 'x'", {"method": "freezed"})])


def test_explicit_settings_override_the_methods_and_the_dataset_picks_its_table():
    assert make_config("thumos14", method="freezad", stride=5).stride == 5
    assert make_config(dataset_rules("ActivityNet-v1.3").preset, method="freezad").stride == 150
    assert method_values("t3al", "thumos14") == {"method": "t3al"}
    with pytest.raises(ConfigError, match="method must be one of"):
        make_config(method="freezed")
