"""The batched path (many adaptations stepping together) gives the per-video path's detections."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from t3al.adapt import batched
from t3al.adapt.batched import (BatchedAdapter, Problem, padded_highest, padded_moving_average, padded_spread,
                                sample_moves)
from t3al.adapt.config import AdaptConfig
from t3al.adapt.localizer import T3AL, Projections, make_optimizer
from t3al.adapt.ops import highest, moving_average, pick_samples
from t3al.adapt.runner import SplitWork, localize_splits
from t3al.adapt.video import GroundTruthHint, VideoInput
from t3al.cache import CacheReader, Head

from conftest import score_spread, write_toy_world

CLASSES = ["Jump", "Throw", "Swim", "Run"]
LENGTHS = [7, 40, 23, 3]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lengths.max())), 123.0)  # padding no result may depend on
    for b, row in enumerate(rows):
        out[b, :len(row)] = row
    return out, lengths


@pytest.mark.parametrize("window", [0, 2, 5, 20])
def test_padded_moving_average_is_each_rows_own(window):
    rows = [torch.randn(n) for n in LENGTHS]
    padded, lengths = _padded(rows)
    out = padded_moving_average(padded, lengths, window)
    for b, row in enumerate(rows):
        assert torch.equal(out[b, :len(row)], moving_average(row, window))


@pytest.mark.parametrize("ties_late", [False, True])
def test_padded_highest_takes_the_same_frames_and_ties(ties_late):
    rows = [torch.randint(0, 4, (n,)).float() for n in (40, 33, 25)]  # many ties at the cut
    padded, lengths = _padded(rows)
    valid = torch.arange(padded.shape[1]) < lengths[:, None]
    mask = padded_highest(padded, 9, valid, ties_late)
    for b, row in enumerate(rows):
        assert torch.equal(torch.nonzero(mask[b]).flatten(), highest(row, 9, ties_late))


@pytest.mark.parametrize("count", [1, 3, 4, 9, 17])
def test_padded_spread_picks_as_pick_samples(count):
    candidates = torch.sort(torch.randperm(30)[:count]).values
    mask = torch.zeros(1, 30, dtype=torch.bool)
    mask[0, candidates] = True
    assert torch.equal(padded_spread(mask, 4)[0], pick_samples(candidates, 4, 30))


def test_sample_moves_are_the_per_video_generators_draws():
    config = AdaptConfig(k=3, radius=5, steps=4)
    generator = torch.Generator().manual_seed(11)
    draws = [torch.randint(-5, 5, (3,), generator=generator) for _ in range(8)]
    assert torch.equal(sample_moves(config, 11), torch.stack(draws).view(4, 2, 3))
    assert not sample_moves(config.replace(radius=0), 11).any()


def _video(n: int, width: int = 4) -> VideoInput:
    return VideoInput("v", torch.randn(n, width), np.arange(n) / 10.0, torch.zeros(0, dtype=torch.long),
                      torch.zeros(0, width))


def _head(width: int = 4) -> Head:
    return Head(np.eye(width, dtype=np.float32), 2 * np.eye(width, dtype=np.float32), 1.5, ["a"], ["a"],
                np.ones((1, width), dtype=np.float32))


@pytest.mark.parametrize("oracle", [(), ("selection",)])
def test_batched_selection_samples_the_frames_the_per_video_selection_samples(oracle):
    config = AdaptConfig(k=4, pool=3, radius=4, window=5, steps=3, oracle=oracle)
    rows = [torch.randn(n) for n in (60, 11, 35)]  # 11 frames <= pool * k: every frame is a candidate
    insides = [torch.arange(len(r)) % 7 < 3 for r in rows]
    insides[1][:] = True  # no frame outside the truth: negatives from every frame
    problems = [Problem(_video(len(row)), torch.ones(4), torch.zeros(4), seed, GroundTruthHint(0, 1, inside))
                for seed, row, inside in zip((1, 2, 3), rows, insides)]
    padded, lengths = _padded(rows)
    adapter = BatchedAdapter(config, _head(), torch.device("cpu"))
    inside, selects = adapter._oracle_masks(problems, padded.shape[1])
    moves = torch.stack([sample_moves(config, p.seed) for p in problems])
    generators = [torch.Generator().manual_seed(p.seed) for p in problems]
    for t in range(config.steps):
        batched = adapter._samples(padded, lengths, moves[:, t], inside, selects)
        for b, (row, problem) in enumerate(zip(rows, problems)):
            expected = torch.cat(T3AL(config)._samples(row, generators[b], problem.hint))
            assert torch.equal(batched[b], expected)


def test_one_adam_over_stacked_parameters_is_per_video_adam():
    config = AdaptConfig(lr=1e-2, visual_lr_scale=0.5, weight_decay=1e-2)
    singles = [Projections(torch.randn(5, 4), torch.randn(6, 4), 0.3 * b) for b in range(3)]
    stacked = Projections(*(torch.stack([getattr(p, n).detach() for p in singles])
                            for n in ("visual_proj", "text_projection", "logit_scale")))
    optimizers = [make_optimizer(p, config) for p in singles]
    optimizer = make_optimizer(stacked, config)
    for _ in range(4):
        for p in singles:
            for q in p.parameters():
                q.grad = torch.randn_like(q)
        for name, q in stacked.named_parameters():
            q.grad = torch.stack([dict(p.named_parameters())[name].grad for p in singles])
        for o in optimizers + [optimizer]:
            o.step()
    for b, p in enumerate(singles):
        for name, q in p.named_parameters():
            # elementwise, but torch's vectorised and scalar loops may round an element differently
            torch.testing.assert_close(dict(stacked.named_parameters())[name][b], q, rtol=1e-6, atol=1e-8)


CONFIGS = [
    AdaptConfig(steps=8, pool=10),  # the public selection with perturbations (r = 10)
    AdaptConfig(steps=6, pool=10, oracle=("selection",), suppression=False),
    AdaptConfig(steps=5, separation="bce", representation="pairwise", adapt=("visual", "scale"), radius=0),
    AdaptConfig(steps=5, separation="none", adapt=("text",), window=1),
    AdaptConfig(method="naive"),
    AdaptConfig(steps=6, pool=5, patience=2),  # early stopping: adapted video by video
    AdaptConfig(steps=5, pool=10, scoring="logoic", suppression=False),  # FreeZAD's scores after a batched adaptation
    AdaptConfig(steps=5, positives="peak", radius=0),  # AdaZAD's peak positives: adapted video by video
]


BATCHED = [0, 1, 2, 3, 6]  # the CONFIGS that adapt on the batched path; the others fall back to per-video code


def _record_batched(monkeypatch) -> list[AdaptConfig]:
    """The configs the batched adapter steps (this module's one reach into batched.py's internals)."""
    ran: list[AdaptConfig] = []
    adapt = batched.BatchedAdapter.adapt

    def recording(self, problems):
        ran.append(self.config)
        return adapt(self, problems)

    monkeypatch.setattr(batched.BatchedAdapter, "adapt", recording)
    return ran


@pytest.mark.parametrize("row_by_row", [("cpu",), ()], ids=["cpu products", "gpu products"])
def test_batched_path_gives_the_per_video_detections(tmp_path, monkeypatch, row_by_row):
    monkeypatch.setattr(batched, "ROW_BY_ROW", row_by_row)  # () runs the GPU's bmm calls on the CPU
    actions = {f"v{i}": (60 + 37 * i, 20 + 7 * i, 50 + 9 * i, i % 4) for i in range(9)}
    cache = write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]], noise=0.6,
                            logit_scale=6.0)
    videos = list(actions)
    truths = {v: [(s / 10.0, (e - 1) / 10.0, c % 2)] for v, (_, s, e, c) in actions.items()}
    splits = [SplitWork(videos, ["Jump", "Throw"], truths), SplitWork(videos[::-1], ["Swim", "Run"])]
    per_video = localize_splits(CacheReader(cache), splits, CONFIGS, seed=5)
    ran = _record_batched(monkeypatch)
    together = localize_splits(CacheReader(cache), splits, CONFIGS, seed=5, device="cpu")
    assert [i for i, config in enumerate(CONFIGS) if config in ran] == BATCHED
    assert len(per_video) == len(together) == len(splits)
    for split_a, split_b in zip(per_video, together):
        assert len(split_a) == len(split_b) == len(CONFIGS)
        for i, (a, b) in enumerate(zip(split_a, split_b)):
            assert [r.video_id for r in a.results] == [r.video_id for r in b.results] and len(a.results) == 9
            for ra, rb in zip(a.results, b.results):
                assert (ra.video_id, ra.pseudo_label, ra.segments, ra.labels) == \
                    (rb.video_id, rb.pseudo_label, rb.segments, rb.labels)
                np.testing.assert_allclose(rb.scores, ra.scores, rtol=0, atol=1e-5)
                np.testing.assert_allclose(rb.similarity, ra.similarity, rtol=0, atol=1e-5)
                assert len(ra.losses) == len(rb.losses)
                np.testing.assert_allclose(rb.losses, ra.losses, rtol=0, atol=1e-5)
    for i in BATCHED:  # the scores each batched config compared are spread, not 0 or 1
        scores = [x for split in per_video for r in split[i].results for x in r.scores]
        distinct, spread = score_spread(scores)
        assert distinct >= 0.8 * len(scores) and len(scores) >= 10 and spread > 0.01, (CONFIGS[i], distinct, spread)


def test_stacked_adaptation_starts_from_the_heads_parameters():
    video = _video(5)
    adapter = BatchedAdapter(AdaptConfig(steps=0), _head(), torch.device("cpu"))
    for item in adapter.adapt([Problem(video, torch.ones(4), torch.zeros(4), 0)] * 2):
        assert torch.equal(item.params.text_projection, 2 * torch.eye(4))
        assert float(item.params.logit_scale.detach()) == 1.5
        assert torch.allclose(item.residual, video.features) and item.adaptation.losses == []


def _cli(*args):
    from click.testing import CliRunner

    from t3al.adapt.cli import main
    return CliRunner().invoke(main, [str(a) for a in args] + ["--no-progress"], catch_exceptions=False)


def test_adapt_device_option_writes_the_per_video_detections(tmp_path):
    actions = {f"v{i}": (120 + 20 * i, 30, 90, i % 4) for i in range(6)}
    cache = write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]])
    assert _cli(cache, "--steps", "4", "--out", tmp_path / "a").exit_code == 0
    assert _cli(cache, "--steps", "4", "--out", tmp_path / "b", "--device", "cpu").exit_code == 0
    for split in ("split_0", "split_1"):
        a = (tmp_path / "a" / split / "detections.csv").read_text().splitlines()
        b = (tmp_path / "b" / split / "detections.csv").read_text().splitlines()
        assert len(a) == len(b) > 1
        for line_a, line_b in zip(a[1:], b[1:]):
            *same_a, score_a = _fields(line_a)
            *same_b, score_b = _fields(line_b)
            assert same_a == same_b and abs(score_a - score_b) <= 1e-5


def _fields(line: str) -> tuple:
    video, start, end, score, label = line.split(",")
    return video, start, end, label, float(score)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    cache = write_toy_world(tmp_path, CLASSES, {"v0": (50, 10, 30, 0)}, [["Jump", "Throw"]])
    result = _cli(cache, "--device", "cuda", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Error: --device cuda: CUDA is not available here" in result.output
