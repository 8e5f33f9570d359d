"""Benchmark of CoCa captions: open_clip's ``generate`` and the project's generator side by side.

    python benchmarks/bench_captions.py                              # demo CoCa + real-size, CPU
    python benchmarks/bench_captions.py --arch coca_ViT-L-14 --device cuda --precision fp16

For each decoding both generators caption the same images in the same process, so machine load hits
both alike; the tokens are compared. open_clip's figure includes its image encodings (it encodes
every image once per beam); the project's reads the image tokens of the feature pass, whose cost is
the feature figure (``t3al + encode`` adds one encoding per caption). The share of stage one taken
by captions is for a 30 fps video captioned at ``--caption-fps`` (decoding excluded).

TF32 is off (matrix products and convolutions): fp32 is the exactness check, and TF32 rounding
that depends on the batch's kernels would make open_clip's 6-image-per-caption vision pass and the
feature pass differ. Where tokens differ, the first differing step of each row is printed with the
log-probability margin between the two tokens there (a margin within rounding is a tie).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import open_clip
import torch

from t3al.cache import ModelIdentity

from t3al.extract.captions import CaptionGenerator, CaptionSettings, open_clip_tokens
from t3al.extract.models import LoadedModel, encode_frames, random_model, register_model_configs, select_device, wrap_model

DEMO = "t3al-demo-coca"


def build(arch: str, device: torch.device) -> torch.nn.Module:
    """The bundled demo CoCa with its weights, or ``arch`` with random weights, on ``device``."""
    register_model_configs()
    if arch == DEMO:
        from t3al.demo.train_tiny_coca import CHECKPOINT
        return open_clip.create_model(arch, pretrained=str(CHECKPOINT), device=device)
    torch.manual_seed(0)
    return random_model(arch, device=device)


def timed(device: torch.device, work, *args):
    """``work(*args)``, its wall time (the device synchronised) and its peak GPU memory in GiB (0 on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = work(*args)
    if device.type != "cuda":
        return out, time.perf_counter() - start, 0.0
    torch.cuda.synchronize(device)
    return out, time.perf_counter() - start, torch.cuda.max_memory_allocated(device) / 2**30


def feature_rate(loaded: LoadedModel, images: torch.Tensor, rounds: int) -> tuple[float, torch.Tensor]:
    """Feature frames/s of the vision pass, and the image tokens of ``images``."""
    with loaded.autocast():
        encode_frames(loaded, images)
        _, seconds, _ = timed(loaded.device, lambda: [encode_frames(loaded, images) for _ in range(rounds)])
        return rounds * len(images) / seconds, encode_frames(loaded, images)[1]


def caption_rates(loaded: LoadedModel, images: torch.Tensor, tokens: torch.Tensor, settings: CaptionSettings,
                  reference: int) -> dict:
    """Captions/s of the generator on all ``tokens`` and of open_clip's ``generate`` on the first
    ``reference`` images (none when 0); are those captions the same tokens?"""
    generator = CaptionGenerator(loaded.model, settings)
    with torch.no_grad(), loaded.autocast():
        generator.tokens(tokens[:1])  # warm-up
        torch.manual_seed(0)
        ours, seconds, peak = timed(loaded.device, generator.tokens, tokens)
        row = {"decoding": settings.decoding, "images": len(tokens), "seq_len": settings.seq_len,
               "t3al_captions_per_s": len(tokens) / seconds, "t3al_peak_gpu_gib": peak}
        if reference:
            torch.manual_seed(0)
            theirs, reference_seconds, peak = timed(loaded.device, open_clip_tokens, loaded.model,
                                                    images[:reference], settings)
            row.update(open_clip_images=reference, open_clip_captions_per_s=reference / reference_seconds,
                       open_clip_peak_gpu_gib=peak, speedup=(reference_seconds / reference) / (seconds / len(tokens)),
                       same_rows=same_rows(theirs, ours[:reference], int(loaded.model.pad_id)))
            row["same_tokens"] = row["same_rows"] == reference
            row["differences"] = first_differences(loaded.model, tokens, theirs, ours[:reference])
    return row


def same_rows(a: torch.Tensor, b: torch.Tensor, pad: int) -> int:
    """How many captions are the same token for token (rows padded to a common length)."""
    width = max(a.shape[1], b.shape[1])
    a, b = (torch.nn.functional.pad(x, (0, width - x.shape[1]), value=pad) for x in (a, b))
    return int((a == b).all(dim=1).sum())


def first_differences(model: torch.nn.Module, image_tokens: torch.Tensor, theirs: torch.Tensor,
                      ours: torch.Tensor) -> list[dict]:
    """For each row whose tokens differ: the first differing step, both tokens, and the margin
    between their log-probabilities given the shared prefix (the decoder's own scores, before the
    repetition penalty; a margin within the precision's rounding means the two were tied)."""
    rows = []
    for row in range(min(len(theirs), len(ours))):
        width = min(theirs.shape[1], ours.shape[1])
        differ = (theirs[row, :width] != ours[row, :width]).nonzero()
        if len(differ) == 0:
            continue
        step = int(differ[0])
        prefix = ours[row: row + 1, :step]
        logits = model(None, prefix, image_latent=image_tokens[row: row + 1], image_embs=image_tokens[row: row + 1],
                       output_labels=False)["logits"][0, -1].float()
        scores = torch.log_softmax(logits, dim=-1)
        mine, other = int(ours[row, step]), int(theirs[row, step])
        rows.append({"row": row, "step": step, "t3al_token": mine, "open_clip_token": other,
                     "log_prob_margin": float(scores[mine] - scores[other])})
    return rows


def caption_share(feature_fps: float, captions_per_s: float, caption_fps: float, video_fps: float = 30.0) -> float:
    """Fraction of stage-one model time spent on captions for one second of video (the image
    encodings inside open_clip's ``generate`` count as caption time)."""
    features = video_fps / feature_fps
    captions = caption_fps / captions_per_s
    return captions / (features + captions) if caption_fps > 0 else 0.0


def bench(arch: str, device: str, precision: str, images: int, seq_len: int, decodings: list[str],
          reference: int, caption_fps: float, feature_batch: int) -> list[dict]:
    """One row per decoding for ``arch``: the generator on ``images`` images, open_clip on ``reference``."""
    selected = select_device(device)
    loaded = wrap_model(build(arch, selected), arch, ModelIdentity(arch, "bench"), selected, precision)
    size = loaded.image_size
    torch.manual_seed(0)
    batch = torch.randn(max(images, feature_batch), 3, size, size, device=loaded.device)
    feature_fps, tokens = feature_rate(loaded, batch[:feature_batch], rounds=2)
    rows = []
    for decoding in decodings:
        settings = CaptionSettings(decoding=decoding, seq_len=seq_len)
        _, tokens = feature_rate(loaded, batch[:images], rounds=1)
        row = caption_rates(loaded, batch, tokens, settings, reference)
        row["t3al_with_encode_captions_per_s"] = 1 / (1 / row["t3al_captions_per_s"] + 1 / feature_fps)
        row["caption_fps"] = caption_fps
        row["caption_share_t3al"] = caption_share(feature_fps, row["t3al_captions_per_s"], caption_fps)
        if reference:
            row["caption_share_open_clip"] = caption_share(feature_fps, row["open_clip_captions_per_s"], caption_fps)
        rows.append({"arch": arch, "device": _device_name(loaded.device), "precision": loaded.precision,
                     "feature_frames_per_s": feature_fps, **row})
    return rows


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def _line(row: dict) -> str:
    parts = [f"{row['arch']} [{row['precision']}, {row['decoding']}, seq_len {row['seq_len']}]:",
             f"features {row['feature_frames_per_s']:.2f} frames/s;",
             f"t3al {row['t3al_captions_per_s']:.3f} captions/s on {row['images']} images "
             f"({row['t3al_with_encode_captions_per_s']:.3f} with one encode each)"]
    if "open_clip_captions_per_s" in row:
        parts.append(f"vs open_clip generate {row['open_clip_captions_per_s']:.4f} captions/s on "
                     f"{row['open_clip_images']} images = {row['speedup']:.1f}x, identical tokens: "
                     f"{row['same_tokens']} ({row['same_rows']}/{row['open_clip_images']} rows);")
        parts.append(f"captions' share of stage one at {row['caption_fps']:g}/s: "
                     f"open_clip {row['caption_share_open_clip']:.0%}, "
                     f"t3al {row['caption_share_t3al']:.0%}")
    else:
        parts.append(f"captions' share of stage one at {row['caption_fps']:g}/s: t3al {row['caption_share_t3al']:.0%}")
    for diff in row.get("differences", []):
        parts.append(f"; row {diff['row']} first differs at step {diff['step']} (t3al token {diff['t3al_token']}, "
                     f"open_clip {diff['open_clip_token']}, log-prob margin {diff['log_prob_margin']:.2e})")
    if row["t3al_peak_gpu_gib"]:
        parts.append(f"; peak GPU memory t3al {row['t3al_peak_gpu_gib']:.2f} GiB, open_clip "
                     f"{row.get('open_clip_peak_gpu_gib', float('nan')):.2f} GiB")
    return " ".join(parts)


@click.command()
@click.option("--arch", "archs", multiple=True, default=[DEMO, "coca_ViT-L-14"], show_default=True,
              help=f"Architectures: {DEMO} (bundled weights) or any open_clip CoCa (random weights); repeatable.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="fp16/bf16: autocast on CUDA.")
@click.option("--images", default=16, show_default=True,
              help="Images the project's generator captions in one batch (the extractor's CPU default is 16).")
@click.option("--reference-images", default=2, show_default=True,
              help="Images open_clip's generate captions (its cost per caption hardly depends on the batch "
                   "on a CPU); their captions are compared with the generator's. 0: skip it.")
@click.option("--seq-len", default=30, show_default=True, help="Caption length (open_clip's default 30).")
@click.option("--decoding", "decodings", default="beam,greedy", show_default=True, help="Comma-separated decodings.")
@click.option("--caption-fps", default=10.0, show_default=True, help="Caption rate for the stage-one share.")
@click.option("--feature-batch", default=8, show_default=True, help="Frames per batch of the feature figure.")
@click.option("--threads", default=0, show_default=True, help="torch CPU threads; 0: torch's default.")
@click.option("--json-out", type=click.Path(path_type=Path), help="Also write the rows as JSON here.")
@click.option("--require-same", is_flag=True, help="Exit 1 unless every caption equals open_clip's token for token.")
def main(archs: tuple[str, ...], device: str, precision: str, images: int, reference_images: int, seq_len: int,
         decodings: str, caption_fps: float, feature_batch: int, threads: int, json_out: Path | None,
         require_same: bool) -> None:
    """Print captions/s of open_clip's generate and the project's generator, side by side."""
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    click.echo(f"load average before: {' '.join(load)}")
    rows = []
    for arch in archs:
        for row in bench(arch, device, precision, images, seq_len, decodings.split(","),
                         min(reference_images, images), caption_fps, feature_batch):
            click.echo(_line(row))
            rows.append(row)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    click.echo(f"load average after: {' '.join(load)}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rows, indent=1))
    if require_same and not all(row.get("same_tokens") for row in rows):
        raise click.ClickException("the generator's tokens differ from open_clip's generate")


if __name__ == "__main__":
    main()
