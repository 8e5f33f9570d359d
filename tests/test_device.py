"""Ready for a GPU, checked on the CPU: a device fault stops stage one without touching other videos'
files, ``cuda:N`` becomes the current device once, the precision is recorded and checked by every
command that writes features, and no caption or batched step creates a tensor without a device."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from device_guard import explicit_devices
from extract_helpers import ffmpeg_children, make_video
from t3al.adapt.algorithm.adapter import AdaptationInput, Projections, adapt_inputs, batch_bytes
from t3al.adapt.config import make_config
from t3al.adapt.algorithm.video import VideoInput
from t3al.cache import CacheReader, Head, VideoRecord
from t3al.extract import models as extract_models
from t3al.extract.captions import CaptionGenerator, CaptionSettings
from t3al.extract.cli import main
from t3al.extract.extractor import is_device_fault
from t3al.extract.models import ModelLoadError, encode_frames, load_model, select_device
from t3al.extract.provenance import precision_mismatch

REPO = Path(__file__).resolve().parents[1]
COCA = "t3al_test_tiny_coca"
ILLEGAL_ADDRESS = "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be reported later"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for name in ("a", "b", "c"):
        make_video(root / f"{name}.mp4", frames=12, rate="25", size="64x48")
    return root


def _extract(models, videos, cache, *extra):
    folder, checkpoints = models
    args = [str(videos), str(cache), "--model", COCA, "--pretrained", str(checkpoints[COCA]), "--model-config",
            str(folder), "--caption-fps", "2", "--caption-length", "6", "--batch-size", "8", *extra]
    return CliRunner().invoke(main, args)


def _files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()}


# torch.AcceleratorError exists from torch 2.8 on; older torch raises CUDA's faults as RuntimeErrors
NEEDS_ACCELERATOR_ERROR = pytest.mark.skipif(not hasattr(torch, "AcceleratorError"),
                                             reason="torch.AcceleratorError exists from torch 2.8 on")
FAULTS = {"AcceleratorError": lambda message: torch.AcceleratorError(message), "RuntimeError": RuntimeError}


@pytest.mark.parametrize("kind", [pytest.param("AcceleratorError", marks=NEEDS_ACCELERATOR_ERROR), "RuntimeError"])
def test_a_device_fault_stops_the_run_in_one_line_and_touches_no_cache_file(models, videos, tmp_path, monkeypatch,
                                                                            kind):
    fault = FAULTS[kind](ILLEGAL_ADDRESS)
    cache = tmp_path / "cache"
    assert _extract(models, videos, cache).exit_code == 0
    later = time.time() + 100
    for path in videos.iterdir():  # every cached video is now stale: a rerun redoes all three
        os.utime(path, (later, later))
    before = _files(cache)
    calls = []

    def faulty(loaded, images):
        calls.append(len(images))
        raise fault

    monkeypatch.setattr("t3al.extract.extractor.encode_frames", faulty)
    result = _extract(models, videos, cache)
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "device fault" in lines[0] and "a.mp4" in lines[0] and "illegal memory access" in lines[0]
    assert "0 done, 0 skipped, 0 failed before it" in lines[0] and "Traceback" not in result.output
    assert len(calls) == 1 and not ffmpeg_children()  # no later video was tried, no decoder left running
    assert _files(cache) == before  # no video removed, no failure recorded
    for path in videos.iterdir():
        os.utime(path, None)


@NEEDS_ACCELERATOR_ERROR
def test_an_accelerator_error_is_a_device_fault():
    assert is_device_fault(torch.AcceleratorError("CUDA error: unspecified launch failure"))


def test_device_faults_are_told_from_a_video_s_own_errors():
    assert is_device_fault(RuntimeError("CUDA error: device-side assert triggered"))
    assert is_device_fault(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm`"))
    assert not is_device_fault(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_device_fault(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    assert not is_device_fault(ValueError("CUDA error in a file name"))


class FakeCuda:
    """``torch.cuda`` of a machine with ``count`` devices, current ``current``; records set_device."""

    def __init__(self, monkeypatch, count: int, current: int = 0) -> None:
        self.selected: list[torch.device] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        monkeypatch.setattr(torch.cuda, "set_device", self.selected.append)


def test_select_device_makes_cuda_n_the_current_device(monkeypatch):
    cuda = FakeCuda(monkeypatch, count=2, current=0)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("cuda") == torch.device("cuda", 0)  # the current device, by its index
    assert select_device("auto") == torch.device("cuda", 0)
    assert cuda.selected == [torch.device("cuda", 1), torch.device("cuda", 0), torch.device("cuda", 0)]
    assert select_device("cpu") == torch.device("cpu") and len(cuda.selected) == 3
    with pytest.raises(ModelLoadError, match="has 2 CUDA device"):
        select_device("cuda:2")


def test_select_device_refuses_cuda_on_a_machine_without_it(monkeypatch):
    cuda = FakeCuda(monkeypatch, count=0)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        select_device("cuda:1")
    with pytest.raises(ModelLoadError, match="--device gpu"):
        select_device("gpu")
    assert cuda.selected == []


def test_the_recorded_precision_is_what_autocast_applies(models):
    folder, checkpoints = models
    extract_models.register_model_configs(folder)
    loaded = load_model(COCA, str(checkpoints[COCA]), device="cpu", precision="fp16")
    assert loaded.applied_precision == "fp32"  # autocast runs on CUDA only
    on_cuda = dataclasses.replace(loaded, device=torch.device("cuda", 0))
    assert on_cuda.applied_precision == "fp16"


def test_import_records_the_precision_and_prompts_refuse_another(models, videos, tmp_path):
    folder, checkpoints = models
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "v1.npy", np.random.default_rng(0).standard_normal((6, 24)).astype(np.float32))
    common = ["--model", COCA, "--pretrained", str(checkpoints[COCA]), "--model-config", str(folder)]
    result = CliRunner().invoke(main, ["import", str(features), str(tmp_path / "imported"), *common, "--fps", "30",
                                       "--classes", "Diving"])
    assert result.exit_code == 0, result.output
    info = CacheReader(tmp_path / "imported").info
    assert info.preprocess["precision"] == "fp32"
    loaded = load_model(COCA, str(checkpoints[COCA]), device="cpu")
    assert precision_mismatch(info, loaded) is None
    half = dataclasses.replace(loaded, device=torch.device("cuda", 0), precision="fp16")
    assert "precision = 'fp32', this run encodes in 'fp16'" in precision_mismatch(info, half)
    assert "--precision fp32" in precision_mismatch(info, half)

    cache = tmp_path / "cache"  # a cache made on a GPU in fp16, to which a CPU would add fp32 prompts
    assert _extract(models, videos, cache, "--caption-fps", "0", "--classes", "Diving").exit_code == 0
    document = json.loads((cache / "cache.json").read_text())
    document["preprocess"]["precision"] = "fp16"
    (cache / "cache.json").write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["prompts", str(cache), *common, "--classes", "Shotput"])
    assert result.exit_code == 1 and "precision = 'fp16', this run encodes in 'fp32'" in result.output
    assert "--precision fp16 on a CUDA device" in result.output
    assert CacheReader(cache).head().class_names == ["Diving"]


def _inputs(head: Head, lengths: tuple[int, ...]) -> list[AdaptationInput]:
    rng = np.random.default_rng(0)
    params = Projections(torch.from_numpy(head.visual_proj), torch.from_numpy(head.text_projection), head.logit_scale)
    inputs = []
    for seed, n in enumerate(lengths):
        features = rng.standard_normal((n, head.visual_proj.shape[0]), dtype=np.float32)
        frames = np.arange(0, n, 3)
        video = VideoInput.from_record(VideoRecord(f"v{seed}", features, np.arange(n) / 10, 10.0, frames,
                                                   [""] * len(frames), features[frames]))
        with torch.no_grad():
            background = video.features.mean(dim=0) @ params.visual_proj
        inputs.append(AdaptationInput(video, torch.from_numpy(head.prompt_features[0]), background,
                                torch.Generator().manual_seed(seed)))
    return inputs


def test_the_batched_step_gives_every_tensor_a_device():
    rng = np.random.default_rng(1)
    width = 16
    head = Head(rng.standard_normal((width, width), dtype=np.float32), rng.standard_normal((width, width), dtype=np.float32),
                np.log(100.0), ["a", "b"], ["a", "b"], rng.standard_normal((2, width), dtype=np.float32))
    inputs = _inputs(head, (40, 55))
    with explicit_devices():
        adapted = adapt_inputs(make_config("thumos14", steps=3), head, inputs, torch.device("cpu"),
                                 batch_bytes(torch.device("cpu")))  # both videos in one batch
    assert len(adapted) == 2 and adapted[1].residual.shape[0] == 55


@pytest.mark.parametrize("decoding", ["beam", "greedy"])
def test_the_caption_step_gives_every_tensor_a_device(models, decoding):
    folder, checkpoints = models
    extract_models.register_model_configs(folder)
    loaded = load_model(COCA, str(checkpoints[COCA]), device="cpu")
    torch.manual_seed(0)
    _, tokens = encode_frames(loaded, torch.randn(3, 3, loaded.image_size, loaded.image_size))
    generator = CaptionGenerator(loaded.model, CaptionSettings(decoding=decoding, seq_len=8))
    with explicit_devices():
        rows = generator.tokens(tokens)
    assert rows.shape[0] == 3 and rows.device == tokens.device


def _benchmark(name: str):
    """A script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_caption_check_names_the_first_differing_step_and_its_margin(models):
    folder, checkpoints = models
    extract_models.register_model_configs(folder)
    loaded = load_model(COCA, str(checkpoints[COCA]), device="cpu")
    torch.manual_seed(0)
    _, tokens = encode_frames(loaded, torch.randn(2, 3, loaded.image_size, loaded.image_size))
    ours = CaptionGenerator(loaded.model, CaptionSettings(decoding="greedy", seq_len=8)).tokens(tokens)
    theirs = ours.clone()
    other = next(t for t in range(1000, 1010) if t not in ours[0, :3].tolist())
    theirs[0, 2] = other
    with torch.no_grad():
        differences = _benchmark("bench_captions").first_differences(loaded.model, tokens, theirs, ours)
    assert [(d["row"], d["step"], d["t3al_token"], d["open_clip_token"]) for d in differences] == [
        (0, 2, int(ours[0, 2]), other)]
    assert differences[0]["log_prob_margin"] > 0  # greedy took the likelier token


def test_the_device_guard_names_a_factory_without_a_device():
    with pytest.raises(AssertionError, match=r"torch.zeros at .*test_device.py"):
        with explicit_devices():
            torch.zeros(3, device="cpu") + torch.zeros(3)
    with explicit_devices():
        torch.as_tensor(torch.ones(2, device="cpu"), dtype=torch.float64)  # keeps its data's device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a machine without CUDA")
def test_gpu_check_without_a_venv_refuses_at_once_where_cuda_is_absent(tmp_path):
    """A checkout without .venv and no PYTHON: the script runs python3 from PATH, and on a machine
    without CUDA stage1 ends within seconds on a line naming CUDA, leaving its three files."""
    root, bin_, out = tmp_path / "checkout", tmp_path / "bin", tmp_path / "out"
    root.mkdir()
    for folder in ("benchmarks", "cache", "adapt", "evaluate", "extract", "manifests", "demo", "localize"):
        (root / folder).symlink_to(REPO / folder)
    bin_.mkdir()
    (bin_ / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_ / "python3").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "PYTHON"}
    env.update(PATH=f"{bin_}:{env['PATH']}", OUT=str(out))
    start = time.perf_counter()
    result = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "stage1"], capture_output=True,
                            text=True, timeout=120, env=env)
    assert time.perf_counter() - start < 30
    assert result.returncode == 1
    assert "--device cuda: torch finds no CUDA device" in result.stdout
    summary = (out / "stage1.txt").read_text()
    assert "stage1 on cuda with python3," in summary and "torch finds no CUDA device" in summary
    assert sorted(p.name for p in out.iterdir()) == ["stage1.json", "stage1.tar.gz", "stage1.txt"]
    figures = json.loads((out / "stage1.json").read_text())
    assert list(figures) == ["environment"] and figures["environment"]["cuda"] is False  # nothing else ran
