"""Small inputs for the stage-one tests: tiny open_clip configs with saved random weights, and videos
generated with the ffmpeg binary the decoder uses."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from t3al.extract.ffmpeg_frames import ffmpeg_binary
from t3al.extract.models import random_model

TINY_CONFIGS = {
    "t3al_test_tiny_coca": {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8,
                       "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
        "text_cfg": {"context_length": 76, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 1,
                     "embed_cls": True, "output_tokens": True},
        "multimodal_cfg": {"context_length": 76, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 1,
                           "attn_pooler_heads": 2},
        "custom_text": True,
    },
    "t3al_test_tiny_clip": {
        "embed_dim": 20,
        "vision_cfg": {"image_size": 48, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    },
}


def write_tiny_models(folder: Path) -> dict[str, Path]:
    """Write each tiny config as ``<name>.json`` and random weights as ``<name>.pt``; return checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = {}
    for name, config in TINY_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    for name in TINY_CONFIGS:
        torch.manual_seed(0)
        model = random_model(name)
        checkpoints[name] = folder / f"{name}.pt"
        torch.save(model.state_dict(), checkpoints[name])
    return checkpoints


def make_video(path: Path, frames: int = 24, rate: str = "25", size: str = "64x48",
               setpts: str | None = None, source: str = "testsrc2") -> Path:
    """An H.264 mp4 of ``frames`` generated frames; ``setpts`` rewrites times (variable frame rate)."""
    spec = f"{source}{':' if '=' in source else '='}size={size}:rate={rate}"
    args = [ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i", spec,
            "-frames:v", str(frames), "-pix_fmt", "yuv420p" if _even(size) else "yuv444p"]
    filters = f"scale={size.replace('x', ':')}"  # testsrc2 rounds odd sizes down; scale does not
    if setpts:
        filters += f",setpts={setpts}"
        args += ["-fps_mode", "vfr"]
    args += ["-vf", filters]
    subprocess.run(args + [str(path)], check=True)
    return path


def make_damaged_videos(folder: Path) -> dict[str, Path]:
    """Two files ffmpeg decodes in part, exiting 0: ``cut.mp4``, the first third of a 100-frame mp4
    whose index is at the front, and ``noise.mp4``, the same mp4 with 20 kB of random bytes in the
    middle."""
    whole = folder / "whole.mp4"
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
                    "-frames:v", "100", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(whole)], check=True)
    data = bytearray(whole.read_bytes())
    whole.unlink()
    (folder / "cut.mp4").write_bytes(bytes(data[: len(data) // 3]))
    middle = len(data) // 2
    data[middle: middle + 20_000] = np.random.default_rng(0).bytes(20_000)
    (folder / "noise.mp4").write_bytes(bytes(data))
    return {"cut": folder / "cut.mp4", "noise": folder / "noise.mp4"}


def _even(size: str) -> bool:
    return all(int(side) % 2 == 0 for side in size.split("x"))


def make_audio(path: Path, seconds: float = 0.5) -> Path:
    """A file with only an audio stream."""
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=duration={seconds}",
                    str(path)], check=True)
    return path


# Variable frame rate, in the 1/25 s time base of the source: 10 frames 0.04 s apart, then 0.12 s apart.
VFR_SETPTS = "if(lt(N\\,10)\\,N\\,10+(N-10)*3)"


def vfr_times(frames: int) -> list[float]:
    """Presentation times of a ``VFR_SETPTS`` video."""
    return [(n if n < 10 else 10 + (n - 10) * 3) / 25 for n in range(frames)]


def ffmpeg_children() -> list[str]:
    """Process ids of this process's ffmpeg children (the decoder's processes still running)."""
    pids = [pid for task in Path("/proc/self/task").glob("*/children") for pid in task.read_text().split()]
    return [pid for pid in pids if Path(f"/proc/{pid}/comm").read_text().startswith("ffmpeg")]


def transformers_generation():
    """transformers' ``generation`` module where open_clip's ``generate`` can use it (the test extra pins a
    transformers below 4.56); skipped elsewhere, where recorded tokens check captions, but a failure in CI."""
    try:
        import transformers.generation as generation
        from open_clip.coca_model import BeamSearchScorer  # noqa: F401  (open_clip's generate imports it)
    except ImportError:
        message = "open_clip's generate needs transformers<4.56 (pip install -e '.[test]')"
        if os.environ.get("T3AL_SHARED"):
            pytest.fail(f"T3AL_SHARED is set (CI) but {message}")
        pytest.skip(f"{message}; tests/data/caption_tokens.json checks captions without it")
    return generation
