"""One adapter over a batch of adaptations: Adam as torch's, rows as their own batches of one,
and the batched path's detections as the per-video path's."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from t3al.adapt.algorithm import adapter
from t3al.adapt.algorithm.adam import Adam, AdamGroup
from t3al.adapt.algorithm.adapter import (AdaptationInput, Adapter, OutOfMemory, Projections, adapt_inputs, batch_bytes,
                                          make_optimizer)
from t3al.adapt.config import AdaptConfig
from t3al.adapt.engine.request import Execution, Request, Task
from t3al.adapt.engine.runner import run_request
from t3al.adapt.algorithm.video import GroundTruthHint, VideoInput
from t3al.cache import CacheReader, Head

from conftest import score_spread, write_toy_world

CLASSES = ["Jump", "Throw", "Swim", "Run"]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _video(n: int, width: int = 4, name: str = "v") -> VideoInput:
    return VideoInput(name, torch.randn(n, width), np.arange(n) / 10.0, torch.zeros(0, dtype=torch.long),
                      torch.zeros(0, width))


def _head(width: int = 4) -> Head:
    return Head(np.eye(width, dtype=np.float32), 2 * np.eye(width, dtype=np.float32), 1.5, ["a"], ["a"],
                np.ones((1, width), dtype=np.float32))


def test_adam_is_torch_optim_adams_update():
    values = [torch.randn(5, 4), torch.randn(6, 4), torch.tensor(0.3)]
    ours = [v.clone() for v in values]
    theirs = [torch.nn.Parameter(v.clone()) for v in values]
    adam = Adam([AdamGroup(ours[1:], 1e-2), AdamGroup(ours[:1], 5e-3)], weight_decay=1e-2)
    reference = torch.optim.Adam([{"params": theirs[1:], "lr": 1e-2}, {"params": theirs[:1], "lr": 5e-3}],
                                 lr=1e-2, weight_decay=1e-2, fused=True)
    for step in range(5):
        for a, b in zip(ours, theirs):
            a.grad = b.grad = None if step == 2 and a.dim() == 0 else torch.randn_like(a)  # a skipped step
        adam.step()
        reference.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b.detach())
    assert float(adam.state[id(ours[2])][2]) == 4  # the skipped step does not count


def test_adam_leaves_frozen_rows_and_their_moments_as_they_were():
    stacked = torch.randn(3, 2, 2)
    alone = stacked[1].clone()
    adam = Adam([AdamGroup([stacked], 1e-1)])
    single = Adam([AdamGroup([alone], 1e-1)])
    for step in range(4):
        stacked.grad = torch.randn_like(stacked)
        alone.grad = stacked.grad[1].clone()
        before = stacked[2].clone()
        adam.step(frozen=torch.tensor([False, False, step >= 1]))
        single.step()
        assert torch.equal(stacked[1], alone)
        if step >= 1:
            assert torch.equal(stacked[2], before)


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


ROWS = [
    AdaptConfig(k=3, pool=4, steps=5, radius=3, window=3),
    AdaptConfig(k=3, pool=4, steps=5, radius=2, positives="peak", peak_window=4),  # draws from a permutation
    AdaptConfig(k=3, pool=4, steps=4, radius=0, positives="peak", peak_window=2),
    AdaptConfig(k=3, pool=4, steps=5, radius=2, oracle=("selection",)),
    AdaptConfig(k=3, pool=4, steps=9, patience=1, lr=1e-1),  # rows stop at different steps
    AdaptConfig(k=3, pool=4, steps=4, implementation="direct"),
    AdaptConfig(k=3, pool=4, steps=4, separation="none", adapt=("text",)),
]


def _inputs(lengths=(40, 9, 23, 31)) -> list[AdaptationInput]:
    videos = [_video(n, name=f"v{n}") for n in lengths]
    hints = [GroundTruthHint(0, 1, torch.arange(n) % 5 < 2) for n in lengths]
    return [AdaptationInput(v, torch.randn(4), 0.1 * torch.randn(4), torch.Generator().manual_seed(b), h)
            for b, (v, h) in enumerate(zip(videos, hints))]


def _reseeded(inputs: list[AdaptationInput]) -> list[AdaptationInput]:
    return [AdaptationInput(p.video, p.prompt, p.background, torch.Generator().manual_seed(b), p.hint)
            for b, p in enumerate(inputs)]


@pytest.mark.parametrize("config", ROWS, ids=lambda c: f"{c.positives}-{c.implementation}-{c.oracle}-{c.patience}")
def test_every_row_of_a_batch_is_its_own_batch_of_one_on_the_cpu(config):
    inputs = _inputs()
    together = adapt_inputs(config, _head(), inputs, "cpu", budget=1 << 30)
    alone = adapt_inputs(config, _head(), _reseeded(inputs), "cpu")
    for a, b in zip(together, alone):
        assert a.adaptation.losses == b.adaptation.losses and len(a.adaptation.losses) >= 1
        assert torch.equal(a.residual, b.residual)
        for name, value in a.params.named_parameters():
            assert torch.equal(value, dict(b.params.named_parameters())[name])
    if config.patience:
        assert len({len(a.adaptation.losses) for a in together}) > 1  # the rows did stop at different steps


@pytest.mark.parametrize("config", ROWS[:1] + ROWS[3:5], ids=["pool", "oracle", "patience"])
def test_gpu_kernels_give_the_cpu_rows_to_float_rounding(config, monkeypatch):
    inputs = _inputs()
    alone = adapt_inputs(config, _head(), inputs, "cpu")
    monkeypatch.setattr(adapter, "ROW_BY_ROW", ())  # the GPU's bmm and vmap calls, run on the CPU
    together = adapt_inputs(config, _head(), _reseeded(inputs), "cpu", budget=1 << 30)
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.adaptation.losses, b.adaptation.losses, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.residual, b.residual, rtol=0, atol=1e-5)


def test_batches_fit_the_budget_shortest_first():
    inputs = _inputs((10, 30, 20))
    per_row = 5 * (4 + 4) * 4  # parameters, gradients, two moments and a snapshot of Pv (4 x 4) and Pt (4 x 4)
    sizes = []
    run = Adapter.adapt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Adapter, "adapt", lambda self, batch, *a: sizes.append([p.video.n_frames for p in batch])
                      or run(self, batch, *a))
        adapt_inputs(AdaptConfig(k=2, steps=1), _head(), inputs, "cpu", budget=2 * (20 * 4 + per_row) * 4)
    assert sizes == [[10, 20], [30]]


def test_out_of_memory_halves_the_batch_and_one_video_that_does_not_fit_is_one_line(monkeypatch):
    inputs = _inputs((10, 12, 14, 16))
    batch = adapter._adapt_batch

    def small_device(config, head, chosen, device):
        if len(chosen) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return batch(config, head, chosen, device)

    monkeypatch.setattr(adapter, "_adapt_batch", small_device)
    config = AdaptConfig(k=2, steps=2)
    done = adapt_inputs(config, _head(), inputs, "cpu", budget=1 << 30)
    alone = adapt_inputs(config, _head(), _reseeded(inputs), "cpu")
    assert [a.adaptation.losses for a in done] == [a.adaptation.losses for a in alone]
    monkeypatch.setattr(adapter, "_adapt_batch", lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(OutOfMemory, match="out of memory adapting video v10 alone; use fewer --jobs"):
        adapt_inputs(config, _head(), inputs, "cpu", budget=1 << 30)


def test_a_gpu_batch_takes_half_of_its_workers_share_of_the_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (12 << 30, 80 << 30))
    assert batch_bytes(torch.device("cuda"), workers=3) == 2 << 30
    assert batch_bytes(torch.device("cpu"), workers=3) == adapter.CPU_BATCH_BYTES


def test_the_numeric_core_imports_no_module_that_runs_work():
    """The adapter raises its out-of-memory error without loading the process and Dask machinery."""
    code = ("import sys, t3al.adapt.algorithm.adapter; "
            "print(sorted(m for m in ('t3al.adapt.engine.cluster', 'joblib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_adapter_trains_stacked_parameters_only():
    one = _inputs((12,))
    with pytest.raises(ValueError, match="1 adaptation.* stacked parameters of as many rows"):
        Adapter(AdaptConfig(k=2, steps=1)).adapt(one, Projections(torch.randn(4, 4), torch.randn(4, 4), 0.0), None)


def test_the_device_alone_chooses_the_kernels():
    assert adapter.kernels_for(torch.device("cpu")) is adapter.RowByRow
    assert adapter.kernels_for(torch.device("cuda")) is adapter.Batched
    assert Adapter(AdaptConfig(), "cpu").kernels is adapter.RowByRow


def test_stage_two_never_imports_torch_dynamo(tmp_path):
    cache = write_toy_world(tmp_path, CLASSES, {"v0": (80, 10, 50, 0), "v1": (60, 20, 40, 1)}, [["Jump", "Throw"]])
    code = ("import sys; from t3al.adapt.engine.runner import localize_split; "
            f"out = localize_split({str(cache)!r}, ['v0', 'v1'], ['Jump', 'Throw'], "
            "__import__('t3al.adapt.config').adapt.config.AdaptConfig(steps=3)); "
            "assert len(out.results) == 2; print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


CONFIGS = [
    AdaptConfig(steps=8, pool=10),  # the public selection with perturbations (r = 10)
    AdaptConfig(steps=6, pool=10, oracle=("selection",), suppression=False),
    AdaptConfig(steps=5, separation="bce", representation="pairwise", adapt=("visual", "scale"), radius=0),
    AdaptConfig(steps=5, separation="none", adapt=("text",), window=1),
    AdaptConfig(method="naive"),
    AdaptConfig(steps=6, pool=5, patience=2),  # early stopping: rows that stop are frozen
    AdaptConfig(steps=5, pool=10, scoring="logoic", suppression=False),  # FreeZAD's scores after a batched adaptation
    AdaptConfig(steps=5, positives="peak", radius=0),  # AdaZAD's peak positives
    AdaptConfig(steps=4, positives="peak", radius=3, implementation="direct"),
]


BATCHED = [0, 1, 2, 3, 5, 6, 7, 8]  # every CONFIG that adapts (all but the naive baseline) steps in batches


def _record_batched(monkeypatch) -> list[AdaptConfig]:
    """The configs the adapter steps with more than one video in a batch."""
    ran: list[AdaptConfig] = []
    adapt = Adapter.adapt

    def recording(self, inputs, *rest):
        if len(inputs) > 1:
            ran.append(self.config)
        return adapt(self, inputs, *rest)

    monkeypatch.setattr(Adapter, "adapt", recording)
    return ran


def _outcomes(cache, splits: list[tuple], execution: Execution) -> list[list]:
    """Every CONFIG on each split (videos, classes, truths): outcomes[split][config]."""
    configs = {str(i): config for i, config in enumerate(CONFIGS)}
    tasks = tuple(Task(s, v, classes, tuple(truths.get(v, ()))) for s, (videos, classes, truths) in enumerate(splits)
                  for v in videos)
    results = run_request(Request(CacheReader(cache), tasks, configs, seed=5, execution=execution))
    return [[results.outcome(name, s) for name in configs] for s in range(len(splits))]


@pytest.mark.parametrize("row_by_row", [("cpu",), ()], ids=["cpu products", "gpu products"])
def test_batched_path_gives_the_per_video_detections(tmp_path, monkeypatch, row_by_row):
    monkeypatch.setattr(adapter, "ROW_BY_ROW", row_by_row)  # () runs the GPU's bmm calls on the CPU
    actions = {f"v{i}": (60 + 37 * i, 20 + 7 * i, 50 + 9 * i, i % 4) for i in range(9)}
    cache = write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]], noise=0.6,
                            logit_scale=6.0)
    videos = list(actions)
    truths = {v: [(s / 10.0, (e - 1) / 10.0, c % 2)] for v, (_, s, e, c) in actions.items()}
    splits = [(videos, ("Jump", "Throw"), truths), (videos[::-1], ("Swim", "Run"), {})]
    per_video = _outcomes(cache, splits, Execution())
    ran = _record_batched(monkeypatch)
    together = _outcomes(cache, splits, Execution(device="cpu"))
    assert [i for i, config in enumerate(CONFIGS) if config in ran] == BATCHED
    assert len(per_video) == len(together) == len(splits)
    exact = row_by_row == ("cpu",)  # the CPU's batches are exact; other kernels round differently
    for split_a, split_b in zip(per_video, together):
        assert len(split_a) == len(split_b) == len(CONFIGS)
        for i, (a, b) in enumerate(zip(split_a, split_b)):
            assert [r.video_id for r in a.results] == [r.video_id for r in b.results] and len(a.results) == 9
            for ra, rb in zip(a.results, b.results):
                assert (ra.video_id, ra.pseudo_label, ra.segments, ra.labels) == \
                    (rb.video_id, rb.pseudo_label, rb.segments, rb.labels)
                tolerance = 0 if exact else 1e-5
                np.testing.assert_allclose(rb.scores, ra.scores, rtol=0, atol=tolerance)
                np.testing.assert_allclose(rb.similarity, ra.similarity, rtol=0, atol=tolerance)
                assert len(ra.losses) == len(rb.losses)
                np.testing.assert_allclose(rb.losses, ra.losses, rtol=0, atol=tolerance)
    for i in BATCHED:  # the scores each batched config compared are spread, not 0 or 1
        scores = [x for split in per_video for r in split[i].results for x in r.scores]
        distinct, spread = score_spread(scores)
        assert distinct >= 0.8 * len(scores) and len(scores) >= 10 and spread > 0.01, (CONFIGS[i], distinct, spread)


def test_stacked_adaptation_starts_from_the_heads_parameters():
    video = _video(5)
    inputs = [AdaptationInput(video, torch.ones(4), torch.zeros(4), torch.Generator())] * 2
    for item in adapt_inputs(AdaptConfig(steps=0), _head(), inputs, "cpu", budget=1 << 30):
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
            assert same_a == same_b and score_a == score_b


def _fields(line: str) -> tuple:
    video, start, end, score, label = line.split(",")
    return video, start, end, label, float(score)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    cache = write_toy_world(tmp_path, CLASSES, {"v0": (50, 10, 30, 0)}, [["Jump", "Throw"]])
    result = _cli(cache, "--device", "cuda", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Error: --device cuda: CUDA is not available here" in result.output
