"""Benchmark of stage one: decode + preprocess throughput and peak memory, and end-to-end extraction.

    python benchmarks/bench_extract.py [VIDEOS_DIR]            # default: $T3AL_SHARED/data/videos or ../shared
    python benchmarks/bench_extract.py --arch coca_ViT-L-14    # real-size architecture, random weights (GPU)

Peak RSS: the process's own maximum resident set (``ru_maxrss``) and the largest ffmpeg child's, sampled.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import tempfile
import time
from pathlib import Path

import click
import open_clip
import torch

from t3al.cache import ModelIdentity

from t3al.extract.captions import CaptionGenerator, CaptionSettings
from t3al.extract.ffmpeg_frames import FrameGeometry, ffmpeg_binary, ffmpeg_command, probe
from t3al.extract.extractor import Extractor, FrameNormalizer, Settings
from t3al.extract.listing import list_videos
from t3al.extract.models import (encode_frames, encode_texts, load_model, random_model, register_model_configs,
                                 select_device, wrap_model)
from t3al.extract.reading import decode_videos, prefetch

TINY_COCA = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32,
                   "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
    "text_cfg": {"context_length": 76, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                 "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 76, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                       "attn_pooler_heads": 2},
    "custom_text": True,
}


def default_videos() -> Path:
    shared = Path(os.environ.get("T3AL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return shared / "data" / "videos"


class ChildMemory(threading.Thread):
    """Samples the resident memory of this process's ffmpeg children every 20 ms; keeps the peak of
    their sum (the next video's ffmpeg runs beside the current one's).

    ``RUSAGE_CHILDREN`` cannot be used: a forked child starts with the parent's resident pages.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            pids = {pid for children in Path("/proc/self/task").glob("*/children")
                    for pid in children.read_text().split()}
            self.peak_mb = max(self.peak_mb, sum(_rss_mb(pid) for pid in pids))


def _rss_mb(pid: str) -> float:
    """VmRSS of an ffmpeg process; 0 for anything else (a child between fork and exec shows the parent's)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    if not status.startswith("Name:\tffmpeg"):
        return 0.0
    rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(rss[0]) / 1024 if rss else 0.0


def own_peak_mb() -> float:
    """Peak resident memory of this process, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ffmpeg(videos: list[Path], size: int) -> dict[str, dict]:
    """ffmpeg alone, twice: decoding only (the ceiling), then also resizing, cropping and writing
    the model-ready frames that Python would read (to /dev/null), one video after the other."""
    infos = [probe(path) for path in videos]
    frames = sum(round(info.duration * info.fps) for info in infos)
    commands = {
        "decode": [[ffmpeg_binary(), "-v", "error", "-nostdin", "-i", str(info.path), "-f", "null", "-"]
                   for info in infos],
        "frames": [ffmpeg_command(info, FrameGeometry(size)) for info in infos],
    }
    results = {}
    for name, stage in commands.items():
        start, cpu = time.perf_counter(), cpu_seconds()
        for command in stage:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        results[name] = {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1),
                         "cpu_ms_per_frame": round(1000 * cpu / frames, 2), "load": os.getloadavg()[0]}
    return results


def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_decode(videos_dir: Path, size: int, batch_size: int, device: str) -> dict:
    """Frames/s of decode + resize + normalise into model-ready float tensors, as the extractor does it
    (decoding in a thread, the next video's ffmpeg started early, normalisation in the consumer).

    Also the CPU time per frame, which other load on a shared machine does not inflate: the rate
    all cores would give when free is ``cpu_count / cpu_per_frame``.
    """
    normalize = FrameNormalizer(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD, select_device(device))
    videos, _ = list_videos(videos_dir)
    todo = [(video, video.stat) for video in videos]
    frames, start, cpu = 0, time.perf_counter(), cpu_seconds()
    for *_, batch, _ in prefetch(decode_videos(todo, FrameGeometry(size), batch_size), 2):
        if batch is not None:
            normalize(batch)
            frames += len(batch)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1),
            "cpu_ms_per_frame": round(1000 * cpu / frames, 2),
            "frames_per_s_free_cores": round(frames * (os.cpu_count() or 1) / cpu, 1),
            "load": os.getloadavg()[0]}


def tiny_checkpoint(folder: Path) -> tuple[str, Path]:
    """Register a small 224-pixel CoCa and save random weights for it."""
    name = "t3al_bench_tiny_coca"
    (folder / f"{name}.json").write_text(json.dumps(TINY_COCA))
    register_model_configs(folder)
    torch.manual_seed(0)
    path = folder / f"{name}.pt"
    torch.save(random_model(name).state_dict(), path)
    return name, path


def bench_end_to_end(videos_dir: Path, caption_fps: float, device: str) -> dict:
    """Whole extraction of the folder with a tiny CoCa (random weights), nothing written."""
    with tempfile.TemporaryDirectory() as tmp:
        name, checkpoint = tiny_checkpoint(Path(tmp))
        loaded = load_model(name, str(checkpoint), device=device)
        extractor = Extractor(loaded, Settings(caption_fps=caption_fps, caption_length=20))
        videos, _ = list_videos(videos_dir)
        todo = [(video, video.stat) for video in videos]
        start = time.perf_counter()
        records = [record for _, record in extractor.records(todo)]
        seconds = time.perf_counter() - start
    frames = sum(r.n_frames for r in records)
    captions = sum(len(r.caption_texts) for r in records)
    return {"model": "tiny CoCa (224 px, 2 layers)", "frames": frames, "captions": captions,
            "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1)}


def bench_architecture(arch: str, device: str, batch_size: int, caption_batch: int) -> dict:
    """Feature frames/s and captions/s (from the feature pass's image tokens) of a real-size
    architecture with random weights."""
    register_model_configs()
    selected = select_device(device)
    cuda = selected.type == "cuda"
    loaded = wrap_model(random_model(arch, device=selected), arch, ModelIdentity(arch, "random"), selected,
                        "fp16" if cuda else "fp32")
    size = loaded.image_size
    images = torch.randn(batch_size, 3, size, size, device=selected)
    result = {"arch": arch, "device": torch.cuda.get_device_name(selected) if cuda else device,
              "precision": loaded.applied_precision}
    for _ in range(2):
        encode_frames(loaded, images)
    _sync(selected)
    start, rounds = time.perf_counter(), 5
    for _ in range(rounds):
        _, tokens = encode_frames(loaded, images)
    _sync(selected)
    result["feature_frames_per_s"] = round(rounds * batch_size / (time.perf_counter() - start), 1)
    if loaded.can_caption:
        generator = CaptionGenerator(loaded.model, CaptionSettings())
        with loaded.autocast():
            generator.texts(tokens[:2])
            _sync(selected)
            start = time.perf_counter()
            texts = generator.texts(tokens[:caption_batch])
        encode_texts(loaded, texts)
        _sync(selected)
        result["captions_per_s"] = round(len(texts) / (time.perf_counter() - start), 1)
    return result


def _sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op off CUDA), so that timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@click.command()
@click.argument("videos_dir", type=click.Path(path_type=Path), required=False)
@click.option("--size", default=224, show_default=True, help="Model input size for the decode benchmark.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--caption-fps", default=1.0, show_default=True, help="Caption rate of the end-to-end run.")
@click.option("--skip-end-to-end", is_flag=True, help="Only the decode benchmark.")
@click.option("--arch", help="Also time this open_clip architecture with random weights (e.g. coca_ViT-L-14).")
@click.option("--caption-batch", default=32, show_default=True, help="Images per caption batch for --arch.")
@click.option("--json-out", type=click.Path(path_type=Path), help="Also write the figures as JSON here.")
def main(videos_dir: Path | None, size: int, batch_size: int, device: str, caption_fps: float,
         skip_end_to_end: bool, arch: str | None, caption_batch: int, json_out: Path | None) -> None:
    """Print frames/s and peak memory of stage one on a folder of videos."""
    videos_dir = videos_dir or default_videos()
    videos, _ = list_videos(videos_dir)
    paths = [v.path for v in videos]
    info = probe(paths[0])
    click.echo(f"{len(paths)} videos in {videos_dir} ({info.width}x{info.height}), {os.cpu_count()} CPUs, "
               f"torch threads {torch.get_num_threads()}")
    ffmpeg_alone = bench_ffmpeg(paths, size)
    for name, what in [("decode", "ffmpeg decode alone (-f null)"),
                       ("frames", f"ffmpeg decode + resize + crop to {size}x{size} planar RGB (to /dev/null)")]:
        stage = ffmpeg_alone[name]
        click.echo(f"{what}: {stage['frames']} frames in {stage['seconds']} s = {stage['frames_per_s']} frames/s, "
                   f"{stage['cpu_ms_per_frame']} CPU ms/frame (load {stage['load']:.1f})")
    children = ChildMemory()
    children.start()
    decode = bench_decode(videos_dir, size, batch_size, device)
    own, child = own_peak_mb(), children.peak_mb
    figures = {"device": device, "ffmpeg": ffmpeg_alone, "decode": {**decode, "peak_rss_python_mib": round(own),
                                                                     "peak_rss_ffmpeg_mib": round(child)}}
    click.echo(f"+ Python reading and normalising to float tensors (the extractor's decoding): {decode['frames']} "
               f"frames in {decode['seconds']} s = {decode['frames_per_s']} frames/s, {decode['cpu_ms_per_frame']} CPU "
               f"ms/frame, i.e. {decode['frames_per_s_free_cores']} frames/s on free cores (load {decode['load']:.1f}); "
               f"peak RSS python {own:.0f} MiB, ffmpeg {child:.0f} MiB")
    if not skip_end_to_end:
        e2e = bench_end_to_end(videos_dir, caption_fps, device)
        own, child = own_peak_mb(), children.peak_mb
        click.echo(f"end-to-end ({e2e['model']}, captions {caption_fps}/s): {e2e['frames']} frames, "
                   f"{e2e['captions']} captions in {e2e['seconds']} s = {e2e['frames_per_s']} frames/s; "
                   f"peak RSS python {own:.0f} MiB, ffmpeg {child:.0f} MiB")
        figures["end_to_end"] = e2e
    if arch:
        figures["architecture"] = bench_architecture(arch, device, batch_size, caption_batch)
        click.echo(json.dumps(figures["architecture"]))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
