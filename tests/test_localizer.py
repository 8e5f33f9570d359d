"""T3AL on one video: pseudo-label, adaptation paths, proposals, suppression, scoring, protocols."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from t3al.adapt.config import AdaptConfig, ConfigError, make_config
from t3al.adapt.algorithm.freezad import freezad_scores, peak_positives
from t3al.adapt.algorithm.adapter import Adaptation, Projections, head_tensors, make_optimizer, samples
from t3al.adapt.algorithm.localizer import T3AL, adaptation_key
from t3al.adapt.engine.runner import localize_split
from t3al.adapt.algorithm.ops import l2norm, moving_average
from t3al.adapt.algorithm.video import GroundTruthHint, VideoInput, VideoProblem
from t3al.cache import Head, VideoRecord

from conftest import score_spread, synthetic_features, write_tiny_cache

WIDTH = 8


def _video(features: np.ndarray, video_id: str = "v", caption_every: int = 5) -> VideoInput:
    frames = np.arange(0, len(features), caption_every)
    return VideoInput.from_record(VideoRecord(
        video_id, features, np.arange(len(features)) / 10.0, 10.0,
        caption_frames=frames, caption_texts=["c"] * len(frames), caption_features=features[frames]))


def _params() -> Projections:
    """Identity projections and exp(s) = 100, as T3AL adapts them: a stacked batch of one."""
    return Projections.stacked(torch.eye(WIDTH), torch.eye(WIDTH), float(np.log(100.0)))


def _classes(n: int = 3) -> torch.Tensor:
    return torch.eye(WIDTH)[:n]


def _spread_params() -> Projections:
    """Projections that mix the axes, with exp(s) = 6: scores and every parameter's gradient spread."""
    generator = torch.Generator().manual_seed(5)
    return Projections.stacked(torch.eye(WIDTH) + 0.2 * torch.randn(WIDTH, WIDTH, generator=generator),
                               torch.eye(WIDTH) + 0.2 * torch.randn(WIDTH, WIDTH, generator=generator),
                               float(np.log(6.0)))


def _spread_video() -> VideoInput:
    """Three actions of class 1 in noisy features: three segments whose scores differ."""
    return _video(synthetic_features(n=400, actions=((30, 90, 1), (150, 200, 1), (260, 330, 1)), seed=3, noise=0.6))


def _run(config: AdaptConfig, video: VideoInput, seed: int = 0, params: Projections | None = None):
    params = _params() if params is None else params
    optimizer = make_optimizer(params, config) if config.steps else None
    return T3AL(config).localize(video, params, optimizer, _classes(), torch.Generator().manual_seed(seed))


class _GradientLog:
    """An optimiser for T3AL.localize that records every parameter's .grad before each Adam step:
    the one place these tests see inside a step, through the optimiser interface only."""

    def __init__(self, params: Projections, config: AdaptConfig) -> None:
        self.params, self.adam, self.steps = params, make_optimizer(params, config), []

    def step(self, frozen: torch.Tensor | None = None) -> None:
        self.steps.append({name: None if p.grad is None else p.grad.clone()
                           for name, p in self.params.named_parameters()})
        self.adam.step(frozen)


def _gradients(config: AdaptConfig, video: VideoInput, seed: int = 0) -> list[dict[str, torch.Tensor | None]]:
    """Each step's parameter gradients of one adaptation from _spread_params."""
    params = _spread_params()
    log = _GradientLog(params, config)
    T3AL(config).localize(video, params, log, _classes(), torch.Generator().manual_seed(seed))
    return log.steps


def test_pseudo_label_is_the_class_nearest_the_mean_frame():
    video = _video(synthetic_features(actions=((0, 200, 2),)))
    label, probabilities, background = T3AL(AdaptConfig()).pseudo_label(video, _params().row(0), _classes())
    assert label == 2 and probabilities.argmax() == 2 and probabilities.sum() == pytest.approx(1.0)
    assert torch.allclose(background, video.features.mean(dim=0), atol=1e-6)


def test_action_is_found_where_the_features_point_at_the_class():
    video = _video(synthetic_features(n=300, actions=((100, 180, 1),)))
    result, _ = _run(AdaptConfig(steps=0), video)
    assert result.pseudo_label == 1
    assert len(result.segments) == 1
    first, last = result.segments[0]
    assert abs(first - 100) <= 12 and abs(last - 179) <= 12


@pytest.mark.parametrize("variant", [
    {},
    {"separation": "bce", "representation": "none"},
    {"separation": "none", "representation": "text"},
    {"separation": "byol", "representation": "pairwise"},
    {"adapt": ("text",)},
    {"adapt": ("visual",)},
    {"patience": 3},
    {"positives": "peak"},
    {"positives": "peak", "radius": 0, "peak_window": 2},
    {"scoring": "logoic"},
    {"positives": "peak", "scoring": "logoic", "suppression": False},
    {"visual_lr_scale": 1.0},
    {"separation": "bce", "representation": "none", "visual_lr_scale": 1.0},
    {"separation": "byol", "representation": "pairwise", "visual_lr_scale": 1.0},
])
def test_fast_path_gives_the_direct_paths_detections(variant):
    video = _spread_video()
    config = AdaptConfig(steps=15, k=4, pool=10, radius=3, lr=1e-2).replace(**variant)
    fast, _ = _run(config, video, seed=7, params=_spread_params())
    direct, _ = _run(config.replace(implementation="direct"), video, seed=7, params=_spread_params())
    assert fast.segments == direct.segments and fast.labels == direct.labels
    distinct, spread = score_spread(direct.scores)
    assert distinct == len(direct.scores) >= 3 and spread > 1e-3  # 100 x the tolerance: the comparison bites
    np.testing.assert_allclose(fast.scores, direct.scores, rtol=1e-5, atol=1e-5)  # LogOIC scores are logits
    np.testing.assert_allclose(fast.similarity, direct.similarity, atol=1e-5)
    assert len(fast.losses) == len(direct.losses) > 0
    np.testing.assert_allclose(fast.losses, direct.losses, atol=1e-5)


@pytest.mark.parametrize("separation, representation", [(s, r) for s in ("byol", "bce", "none")
                                                        for r in ("text", "pairwise", "none") if (s, r) != ("none", "none")])
@pytest.mark.parametrize("positives", ["pool", "peak"])
def test_fast_step_sets_the_gradients_autograd_sets(separation, representation, positives):
    config = AdaptConfig(steps=3, k=4, pool=10, radius=3, lr=1e-2, separation=separation,
                         representation=representation, positives=positives)
    video = _spread_video()
    fast, direct = _gradients(config, video), _gradients(config.replace(implementation="direct"), video)
    assert len(fast) == len(direct) == 3
    for step, (a, b) in enumerate(zip(fast, direct)):
        assert a.keys() == b.keys() == {"visual_proj", "text_projection", "logit_scale"}
        for name in a:
            if b[name] is None:  # nothing reaches it: the separation loss is off
                assert a[name] is None and separation == "none" and name != "visual_proj"
                continue
            if name == "logit_scale" and separation == "byol":  # BYOL normalises the scores: no pull on s
                assert abs(float(a[name])) < 1e-6 and abs(float(b[name])) < 1e-6
                continue
            assert b[name].abs().max() > 1e-4, (step, name)  # a gradient a wrong row would change
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6 * float(b[name].abs().max()),
                                       msg=lambda m: f"step {step}, {name}: {m}")


def test_region_score_is_the_label_probability_of_the_segments_mean_residual():
    video = _spread_video()
    result, _ = _run(AdaptConfig(steps=0, suppression=False), video, params=_spread_params())
    params = _spread_params().row(0).requires_grad_(False)
    x = video.features @ params.visual_proj
    residual = x - x.mean(dim=0)  # F before normalisation, background removed
    classes = l2norm(_classes() @ params.text_projection)
    assert len(result.segments) == len(result.scores) == len(result.labels) == 3
    for (first, last), score, label in zip(result.segments, result.scores, result.labels):
        r = residual[first:last].mean(dim=0)  # frames first .. last - 1
        assert score == pytest.approx(float(torch.softmax(6.0 * classes @ l2norm(r), dim=0)[label]), rel=1e-5)


def test_adaptation_changes_parameters_with_their_own_learning_rates():
    video = _video(synthetic_features())
    params = _params()
    config = AdaptConfig(steps=3, lr=1e-2, visual_lr_scale=1e-3, weight_decay=0.0)
    T3AL(config).localize(video, params, make_optimizer(params, config), _classes(), torch.Generator())
    text_change = (params.text_projection - torch.eye(WIDTH)).abs().max()
    visual_change = (params.visual_proj - torch.eye(WIDTH)).abs().max()
    assert 0 < text_change <= 3 * 1e-2 * 1.01  # Adam moves each entry by at most ~lr per step
    assert 0 < visual_change <= 3 * 1e-5 * 1.01


def test_only_the_chosen_parameters_adapt():
    video = _video(synthetic_features())
    params = _params()
    config = AdaptConfig(steps=3, lr=1e-2, adapt=("text",))
    T3AL(config).localize(video, params, make_optimizer(params, config), _classes(), torch.Generator())
    assert torch.equal(params.visual_proj[0], torch.eye(WIDTH))
    assert float(params.logit_scale) == pytest.approx(np.log(100.0))
    assert not torch.equal(params.text_projection[0], torch.eye(WIDTH))


def test_proposals_use_the_parameters_from_the_start_of_the_last_step():
    video = _video(synthetic_features())
    result, adaptation = _run(AdaptConfig(steps=2, lr=1e-2), video)
    assert isinstance(adaptation, Adaptation) and len(adaptation.losses) == 2
    assert not torch.equal(adaptation.before_last["text_projection"], torch.eye(WIDTH))


def test_pseudo_label_rule_gives_every_segment_the_video_label():
    features = synthetic_features(n=400, actions=((50, 150, 1), (250, 350, 2)))
    features[250:350, 1] += 1.2  # the second action looks a bit like class 1 too
    video = _video(features)
    config = AdaptConfig(steps=0, suppression=False)
    pseudo, _ = _run(config, video)
    argmax, _ = _run(config.replace(label_rule="argmax"), video)
    assert pseudo.segments == argmax.segments and len(pseudo.segments) == 2
    assert set(pseudo.labels) == {pseudo.pseudo_label}
    assert argmax.labels == [1, 2]


def test_suppression_drops_a_segment_whose_captions_disagree():
    video = _video(synthetic_features(n=300))
    captions = torch.zeros(6, WIDTH)
    captions[:, 0] = 1.0
    captions[5] = torch.eye(WIDTH)[3]
    video.caption_frames = torch.tensor([10, 12, 100, 102, 200, 250])
    video.caption_features = captions
    kept = T3AL(AdaptConfig())._suppress(video, [(5, 20), (90, 110), (240, 260), (280, 290)], torch.eye(WIDTH))
    # (280, 290) has no caption; (240, 260) points elsewhere: 1 vote, not > floor(3 / 2)
    assert kept == [(5, 20), (90, 110)]


def test_steps_zero_keeps_the_model_parameters():
    video = _video(synthetic_features())
    params = _params()
    T3AL(AdaptConfig(steps=0)).localize(video, params, None, _classes(), torch.Generator())
    assert torch.equal(params.text_projection[0], torch.eye(WIDTH))


@pytest.mark.parametrize("n_frames, reason", [(1, "at least 2"), (0, "at least 2")])
def test_videos_too_short_are_problems(n_frames, reason):
    with pytest.raises(VideoProblem, match=reason):
        _video(np.ones((n_frames, WIDTH), dtype=np.float32))


def test_nan_and_zero_features_are_problems_naming_the_video():
    features = synthetic_features()
    features[3, 0] = np.nan
    with pytest.raises(VideoProblem, match="video v: 1 frame feature"):
        _video(features)
    features = synthetic_features()
    features[4:6] = 0.0
    with pytest.raises(VideoProblem, match="2 frame feature.*zero"):
        _video(features)


def test_fewer_frames_than_k_still_localizes():
    result, _ = _run(AdaptConfig(steps=2, k=4), _video(synthetic_features(n=3, actions=())))
    assert len(result.similarity) == 3


def test_constant_similarity_warns_and_proposes_nothing():
    features = np.tile(np.eye(WIDTH, dtype=np.float32)[1], (50, 1))
    result, _ = _run(AdaptConfig(steps=0), _video(features))
    assert result.segments == [] and "constant similarity" in result.warnings[0]


def test_invalid_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="k must be"):
        AdaptConfig(k=1)
    with pytest.raises(ConfigError, match="protocol must be one of"):
        make_config(protocol="batch")
    with pytest.raises(ConfigError, match="unknown setting"):
        make_config(bogus=1)


def test_activitynet_preset_holds_the_public_values():
    config = make_config("activitynet")
    assert (config.steps, config.k, config.stride, config.beta, config.threshold) == (15, 20, 200, 0.8, 0.7)
    assert not config.remove_background and not config.normalize


def _split_cache(tmp_path, n_videos=5):
    videos = {f"vid{i}": synthetic_features(n=200 + 40 * i, actions=((60, 120, i % 3),), seed=i)
              for i in range(n_videos)}
    return write_tiny_cache(tmp_path / "cache", videos, ["A", "B", "C"])


def test_same_seed_gives_identical_detections_whatever_the_jobs(tmp_path):
    cache = _split_cache(tmp_path)
    ids = [f"vid{i}" for i in range(5)]
    config = AdaptConfig(steps=5, lr=1e-3)
    one = localize_split(str(cache), ids, ["A", "B", "C"], config, seed=3, jobs=1)
    two = localize_split(str(cache), ids, ["A", "B", "C"], config, seed=3, jobs=2)
    assert [r.video_id for r in one.results] == [r.video_id for r in two.results] == ids
    for a, b in zip(one.results, two.results):
        assert a.segments == b.segments and a.scores == b.scores


def test_reset_protocol_does_not_depend_on_video_order(tmp_path):
    cache = _split_cache(tmp_path)
    config = AdaptConfig(steps=5, lr=1e-3)
    forward = localize_split(str(cache), ["vid0", "vid1"], ["A", "B", "C"], config).results
    backward = localize_split(str(cache), ["vid1", "vid0"], ["A", "B", "C"], config).results
    assert forward[0].scores == backward[1].scores and forward[1].scores == backward[0].scores


def test_stream_protocol_carries_parameters_and_depends_on_order(tmp_path):
    cache = _split_cache(tmp_path)
    config = AdaptConfig(protocol="stream", steps=5, lr=1e-2, radius=0)
    forward = localize_split(str(cache), ["vid0", "vid1"], ["A", "B", "C"], config).results
    alone = localize_split(str(cache), ["vid1"], ["A", "B", "C"], config).results
    assert forward[1].losses != alone[0].losses


def test_a_missing_video_is_a_problem_and_the_split_goes_on(tmp_path):
    cache = _split_cache(tmp_path, n_videos=2)
    outcome = localize_split(str(cache), ["vid0", "ghost", "vid1"], ["A", "B", "C"], AdaptConfig(steps=1))
    assert [r.video_id for r in outcome.results] == ["vid0", "vid1"]
    assert [p.video_id for p in outcome.problems] == ["ghost"]


# Each switch changes what it should and nothing else.

def _hint(video: VideoInput, true_class: int, count: int, inside: slice) -> GroundTruthHint:
    mask = torch.zeros(video.n_frames, dtype=torch.bool)
    mask[inside] = True
    return GroundTruthHint(true_class, count, mask)


def _three_actions() -> VideoInput:
    return _video(synthetic_features(n=450, actions=((40, 100, 1), (190, 250, 1), (340, 400, 1))))


def test_suppression_off_keeps_what_suppression_drops_on_the_same_curve():
    video = _three_actions()
    video.caption_features[video.caption_frames >= 300] = torch.eye(WIDTH)[3]  # the third action's captions disagree
    kept, _ = _run(AdaptConfig(steps=0), video)
    every, _ = _run(AdaptConfig(steps=0, suppression=False), video)
    np.testing.assert_array_equal(kept.similarity, every.similarity)
    assert len(every.segments) == 3 and kept.segments == every.segments[:2]


def test_beta_one_drops_every_segment_and_minus_one_keeps_every_captioned_one():
    video = _three_actions()
    none, _ = _run(AdaptConfig(steps=0, beta=1.0), video)
    every, _ = _run(AdaptConfig(steps=0, beta=-1.0), video)
    assert none.segments == [] and len(every.segments) == 3


def test_background_removal_changes_the_curve_but_not_the_pseudo_label():
    video = _video(synthetic_features(n=300, actions=((100, 180, 1),)))
    removed, _ = _run(AdaptConfig(steps=0), video)
    kept, _ = _run(AdaptConfig(steps=0, remove_background=False), video)
    assert removed.pseudo_label == kept.pseudo_label == 1
    assert not np.allclose(removed.similarity, kept.similarity)


def test_smoothing_window_is_a_moving_average_of_the_unsmoothed_curve():
    video = _video(synthetic_features(n=300, actions=((100, 180, 1),)))
    raw, _ = _run(AdaptConfig(steps=0, window=0, normalize=False), video)
    smooth, _ = _run(AdaptConfig(steps=0, window=20, normalize=False), video)
    np.testing.assert_allclose(smooth.similarity, moving_average(torch.from_numpy(raw.similarity), 20).numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("separation, representation", [("bce", "none"), ("byol", "none"), ("none", "text"),
                                                        ("byol", "pairwise")])
def test_each_loss_changes_the_losses_but_not_the_pseudo_label(separation, representation):
    video = _video(synthetic_features())
    base = AdaptConfig(steps=2, lr=1e-2, radius=0)
    reference, _ = _run(base, video)
    variant, _ = _run(base.replace(separation=separation, representation=representation), video)
    assert variant.pseudo_label == reference.pseudo_label
    assert not np.allclose(variant.losses, reference.losses)


def test_text_only_adaptation_leaves_the_visual_curve_path_untouched():
    video = _video(synthetic_features())
    params = _params()
    config = AdaptConfig(steps=3, lr=1e-2, adapt=("text", "scale"))
    _, adaptation = T3AL(config).localize(video, params, make_optimizer(params, config), _classes(), torch.Generator())
    assert torch.equal(adaptation.before_last["visual_proj"], torch.eye(WIDTH))
    assert not torch.equal(params.text_projection[0], torch.eye(WIDTH))


def test_early_stopping_ends_adaptation_when_the_loss_stops_falling():
    video = _video(synthetic_features())
    fixed, _ = _run(AdaptConfig(steps=20, lr=0.0, radius=0), video)
    stopped, _ = _run(AdaptConfig(steps=20, lr=0.0, radius=0, patience=5), video)
    assert len(fixed.losses) == 20 and len(stopped.losses) == 6  # constant loss: 5 steps without a lower one


def test_radius_zero_makes_the_result_independent_of_the_seed():
    video = _video(synthetic_features())
    config = AdaptConfig(steps=3, lr=1e-2, radius=0)
    assert _run(config, video, seed=1)[0].losses == _run(config, video, seed=2)[0].losses
    moved = config.replace(radius=10)
    assert _run(moved, video, seed=1)[0].losses != _run(moved, video, seed=2)[0].losses


def test_class_oracle_uses_the_true_class():
    video = _video(synthetic_features(n=300, actions=((100, 180, 1),)))
    config = AdaptConfig(steps=0, oracle=("class",))
    result, _ = T3AL(config).localize(video, _params(), None, _classes(), torch.Generator(),
                                      hint=_hint(video, 2, 1, slice(100, 180)))
    assert result.pseudo_label == 2 and set(result.labels) <= {2}
    assert result.probabilities.argmax() == 1  # the model's own probabilities are reported unchanged


def test_count_oracle_keeps_exactly_the_true_count_of_the_same_segments():
    video = _three_actions()
    video.features[190:250, 1] += 1.0  # the middle action is the most similar to its class
    config = AdaptConfig(steps=0, suppression=False)
    every, _ = _run(config, video)
    hint = _hint(video, 1, 1, slice(190, 250))
    counted, _ = T3AL(config.replace(oracle=("count",))).localize(video, _params(), None, _classes(),
                                                                   torch.Generator(), hint=hint)
    np.testing.assert_array_equal(counted.similarity, every.similarity)
    assert len(every.segments) == 3 and counted.segments == [every.segments[1]]


def test_selection_oracle_draws_positives_inside_the_truth_and_negatives_outside():
    video = _video(synthetic_features(n=300, actions=((100, 180, 1),)))
    config = AdaptConfig(k=4, radius=0, oracle=("selection",))
    positives, negatives = samples(config, torch.zeros(300), torch.Generator(), _hint(video, 1, 1, slice(20, 60))).split(4)
    assert ((positives >= 20) & (positives < 60)).all()
    assert ((negatives < 20) | (negatives >= 60)).all()


def test_proposal_variants_share_one_adaptation_and_match_separate_runs():
    video = _three_actions()
    base = AdaptConfig(steps=4, lr=1e-2, radius=3)
    variants = [base, base.replace(suppression=False), base.replace(label_rule="argmax", beta=0.5)]
    params = _params()
    shared, _ = T3AL(base).localize_variants(video, params, make_optimizer(params, base), _classes(),
                                             torch.Generator().manual_seed(0), variants)
    assert len(shared) == len(variants)
    for variant, result in zip(variants, shared):
        alone, _ = _run(variant, video)
        assert result.segments == alone.segments and result.labels == alone.labels
        assert result.scores == alone.scores and result.losses == alone.losses


def test_variants_that_adapt_differently_are_refused():
    with pytest.raises(ValueError, match="PROPOSAL_FIELDS"):
        T3AL(AdaptConfig()).localize_variants(_video(synthetic_features()), _params(), None, _classes(),
                                              torch.Generator(), [AdaptConfig(k=8)])


# The three choices of docs/freezad.md, each changing what it should and nothing else.

def test_logoic_scoring_changes_only_the_scores_to_logoic_of_the_unsmoothed_curve_times_actionness():
    video = _three_actions()
    region, _ = _run(AdaptConfig(steps=0, suppression=False), video)
    logoic, _ = _run(AdaptConfig(steps=0, suppression=False, scoring="logoic"), video)
    assert logoic.segments == region.segments and logoic.labels == region.labels and len(region.segments) == 3
    np.testing.assert_array_equal(logoic.similarity, region.similarity)
    residual = video.features - video.features.mean(dim=0)  # identity Pv, background removed
    raw = 100.0 * l2norm(residual) @ torch.eye(WIDTH)[logoic.pseudo_label]  # exp(s) * cos(F_i, e), unsmoothed
    np.testing.assert_allclose(logoic.scores, freezad_scores(raw, residual, logoic.segments), rtol=1e-5)
    assert not np.allclose(logoic.scores, region.scores)


def test_peak_positives_change_the_adaptation_but_not_the_pseudo_label():
    video = _video(synthetic_features(n=400, actions=((50, 120, 1), (250, 330, 1)), seed=3))
    base = AdaptConfig(steps=3, lr=1e-2, radius=0)
    pool, _ = _run(base, video)
    peak, _ = _run(base.replace(positives="peak"), video)
    assert peak.pseudo_label == pool.pseudo_label
    assert not np.allclose(peak.losses, pool.losses)
    sim = torch.from_numpy(np.random.default_rng(0).standard_normal(400).astype(np.float32))
    positives, negatives = samples(base.replace(positives="peak"), sim, torch.Generator(), None).split(4)
    _, pool_negatives = samples(base, sim, torch.Generator(), None).split(4)
    assert torch.equal(positives, peak_positives(moving_average(sim, 20), 4, 15, draw=False))
    assert torch.equal(negatives, pool_negatives)


def test_restore_rule_matters_only_in_the_stream_after_the_first_video(tmp_path):
    cache = _split_cache(tmp_path)
    config = AdaptConfig(protocol="stream", steps=5, lr=1e-2, radius=0)
    restored = localize_split(str(cache), ["vid0", "vid1"], ["A", "B", "C"], config).results
    carried = localize_split(str(cache), ["vid0", "vid1"], ["A", "B", "C"], config.replace(restore="none")).results
    assert restored[0].losses == carried[0].losses and restored[0].scores == carried[0].scores
    assert restored[1].losses != carried[1].losses
    reset = AdaptConfig(steps=5)
    assert adaptation_key(reset) == adaptation_key(reset.replace(restore="none"))
    assert adaptation_key(config) != adaptation_key(config.replace(restore="none"))


def test_adazad_stream_gives_the_same_detections_on_both_paths(tmp_path):
    cache = _split_cache(tmp_path)
    config = AdaptConfig(protocol="stream", steps=4, lr=1e-2, radius=2, positives="peak", restore="none",
                         scoring="logoic", suppression=False)
    fast = localize_split(str(cache), ["vid0", "vid1", "vid2"], ["A", "B", "C"], config, seed=1).results
    direct = localize_split(str(cache), ["vid0", "vid1", "vid2"], ["A", "B", "C"],
                            config.replace(implementation="direct"), seed=1).results
    assert [r.video_id for r in fast] == [r.video_id for r in direct] == ["vid0", "vid1", "vid2"]
    assert score_spread([s for r in direct for s in r.scores])[0] >= 3  # LogOIC scores: not saturated
    for a, b in zip(fast, direct):
        assert a.segments == b.segments and a.labels == b.labels
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
        np.testing.assert_allclose(a.losses, b.losses, atol=1e-5)


def _head(dv: int = WIDTH, e: int = WIDTH) -> Head:
    rng = np.random.default_rng(0)
    return Head(visual_proj=rng.standard_normal((dv, e)).astype(np.float32),
                text_projection=np.eye(WIDTH, e, dtype=np.float32), logit_scale=np.log(100.0),
                class_names=["A"], prompts=["a video of action A"], prompt_features=np.eye(1, WIDTH, dtype=np.float32))


def test_without_visual_projection_x_is_the_raw_features_and_pv_never_adapts():
    config = AdaptConfig(project_visual=False, adapt=("visual", "text"))
    visual, text, _ = head_tensors(_head(), config)
    assert torch.equal(visual, torch.eye(WIDTH)) and torch.equal(text, torch.eye(WIDTH))
    assert torch.equal(head_tensors(_head(), AdaptConfig())[0], torch.from_numpy(_head().visual_proj))
    params = Projections(visual, text, float(np.log(100.0)))
    make_optimizer(params, config)
    assert not params.visual_proj.requires_grad and params.text_projection.requires_grad
    with pytest.raises(ConfigError, match="no Pv to adapt"):
        AdaptConfig(project_visual=False, adapt=("visual",))


def test_without_visual_projection_a_model_whose_dv_is_not_e_is_refused():
    from t3al.adapt.engine.runner import _check_widths

    _check_widths(_head(), [AdaptConfig(project_visual=False)])
    with pytest.raises(ConfigError, match="Dv equals E"):
        _check_widths(_head(dv=WIDTH, e=4), [AdaptConfig(project_visual=False)])


def test_naive_baseline_on_pre_projection_features_skips_pv(tmp_path):
    from t3al.cache import CacheInfo, CacheReader, CacheWriter, ModelIdentity

    cache = write_tiny_cache(tmp_path / "cache", {"v": synthetic_features(n=200, actions=((50, 150, 1),))},
                             ["A", "B", "C"])
    head = CacheReader(cache).head()
    swap = np.eye(WIDTH, dtype=np.float32)[[0, 2, 1] + list(range(3, WIDTH))]  # Pv swaps the B and C axes
    head.visual_proj = swap
    CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32")).write_head(head)
    naive = AdaptConfig(method="naive", naive_threshold=0.5)
    projected = localize_split(str(cache), ["v"], ["A", "B", "C"], naive).results[0]
    raw = localize_split(str(cache), ["v"], ["A", "B", "C"], naive.replace(project_visual=False)).results[0]
    assert set(projected.labels) == {2} and set(raw.labels) == {1}
    assert projected.segments == raw.segments
