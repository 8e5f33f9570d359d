"""The small steps of the method (docs/method.md) on inputs small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from t3al.adapt.algorithm.ops import (
    byol_loss,
    consensus_keep,
    group_segments,
    highest,
    min_max,
    moving_average,
    pick_samples,
    select_samples,
)


def test_moving_average_window_20_spans_nine_before_and_ten_after():
    x = torch.zeros(40)
    x[25] = 20.0
    y = moving_average(x, 20)
    # frame i sees frames i-9 .. i+10, so the spike at 25 reaches frames 15 .. 34
    assert torch.nonzero(y).flatten().tolist() == list(range(15, 35))
    assert torch.allclose(y[15:35], torch.ones(20))


def test_moving_average_replicates_the_edges():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # w = 4: frames i-1 .. i+2; frame 0 sees [1, 1, 2, 3], frame 3 sees [3, 4, 4, 4]
    assert moving_average(x, 4).tolist() == pytest.approx([1.75, 2.5, 3.25, 3.75])


def test_moving_average_of_window_one_is_identity():
    x = torch.tensor([3.0, 1.0, 2.0])
    assert moving_average(x, 1).tolist() == [3.0, 1.0, 2.0]


def test_min_max_maps_to_unit_range_and_constant_to_zero():
    assert min_max(torch.tensor([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(torch.tensor([5.0, 5.0])).tolist() == [0.0, 0.0]


def test_selection_spreads_the_top_and_bottom_candidates_in_time():
    # 20 frames, k = 2, pool = 2: the 4 highest are frames 16..19, the 4 lowest 0..3
    sim = torch.arange(20.0)
    positives, negatives = select_samples(sim, k=2, pool=2)
    # step (4 - 1) // (2 - 1) = 3: the first and the fourth candidate in time
    assert positives.tolist() == [16, 19]
    assert negatives.tolist() == [0, 3]


def test_ties_at_the_cut_go_to_the_earliest_frames_for_positives_and_latest_for_negatives():
    # values 0 0 1 1 1 1 2 2: the 3 highest are 6, 7 and the earliest 1 (frame 2);
    # the 3 lowest are 0, 1 and the latest 1 (frame 5)
    sim = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    assert highest(sim, 3).tolist() == [2, 6, 7]
    assert highest(-sim, 3, ties_late=True).tolist() == [0, 1, 5]


@pytest.mark.parametrize("seed", range(5))
def test_partial_selection_matches_a_stable_descending_sort(seed):
    generator = torch.Generator().manual_seed(seed)
    sim = torch.randint(0, 7, (300,), generator=generator).float()  # many ties
    order = torch.argsort(sim, descending=True, stable=True)
    assert highest(sim, 40).tolist() == sorted(order[:40].tolist())
    assert highest(-sim, 40, ties_late=True).tolist() == sorted(order[-40:].tolist())


def test_short_video_uses_every_frame_for_both_sides():
    sim = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0, 0.0])
    positives, negatives = select_samples(sim, k=3, pool=100)
    # 100 * 3 >= 6: candidates are 0..5 for both; step (6 - 1) // 2 = 2
    assert positives.tolist() == negatives.tolist() == [0, 2, 4]


def test_fewer_frames_than_k_repeats_each_index():
    positives, negatives = select_samples(torch.tensor([1.0, 2.0, 3.0]), k=4, pool=100)
    # repeat_interleave(4 // 3 + 1 = 2) -> 0 0 1 1 2 2, cut to 4, step 1
    assert positives.tolist() == negatives.tolist() == [0, 0, 1, 1]


def test_perturbation_stays_within_radius_and_the_video():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        picks = pick_samples(torch.tensor([0, 5, 9]), k=3, n=10, radius=2, generator=generator)
        assert picks.min() >= 0 and picks.max() <= 9
        assert (picks - torch.tensor([0, 5, 9])).abs().max() <= 2


def test_radius_zero_ignores_the_generator_and_spreads_the_pool_evenly():
    sim = torch.rand(500, generator=torch.Generator().manual_seed(1))
    # independently of the code: the 40 highest (lowest) frames in time order, every 13th of them
    order = np.argsort(sim.numpy(), kind="stable")
    expected = [np.sort(order[-40:])[[0, 13, 26, 39]], np.sort(order[:40])[[0, 13, 26, 39]]]
    for generator in (None, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)):
        positives, negatives = select_samples(sim, 4, 10, radius=0, generator=generator)
        assert positives.tolist() == expected[0].tolist() and negatives.tolist() == expected[1].tolist()


def test_byol_loss_of_a_perfect_match_is_the_smoothing_gap():
    target = torch.tensor([1.0, 0.0])
    # norm(pred) = [1, 0]; smoothed target = 0.8 * [1, 0] + 0.2 / 2 = [0.9, 0.1] -> 2 - 2 * 0.9
    assert float(byol_loss(torch.tensor([3.0, 0.0]), target)) == pytest.approx(0.2)
    assert float(byol_loss(torch.tensor([3.0, 0.0]), target, smoothing=0.0)) == pytest.approx(0.0)


def test_byol_loss_sums_over_rows_and_averages_over_columns():
    pred = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # products (no smoothing): [[1, 0], [0, 0]]; sum over rows [1, 0]; mean 0.5 -> 2 - 1
    assert float(byol_loss(pred, target, smoothing=0.0)) == pytest.approx(1.0)


def test_byol_loss_sends_no_gradient_to_the_target():
    pred = torch.tensor([1.0, 2.0], requires_grad=True)
    target = torch.tensor([2.0, 1.0], requires_grad=True)
    byol_loss(pred, target).backward()
    assert pred.grad is not None and target.grad is None


def test_grouping_splits_on_gaps_larger_than_stride_and_drops_single_frames():
    kept = torch.tensor([1, 2, 3, 10, 30, 31, 52])
    # stride 7: gap 3 -> 10 is 7 (same segment), 10 -> 30 is 20 (new), 31 -> 52 is 21 (new)
    assert group_segments(kept, stride=7) == [(1, 10), (30, 31)]
    assert group_segments(torch.tensor([], dtype=torch.long), stride=7) == []


def test_consensus_keeps_segments_agreeing_with_more_than_half():
    directions = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # cosines with row 0: 1, 0.995, 0 -> 2 votes > floor(3 / 2) = 1; row 2 has only itself
    assert consensus_keep(directions, beta=0.75).tolist() == [True, True, False]


def test_consensus_of_two_disagreeing_segments_drops_both():
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each row has one vote (itself), which is not > floor(2 / 2) = 1
    assert consensus_keep(directions, beta=0.75).tolist() == [False, False]
