"""``t3al-extract``: stage one, from a folder of videos (or the published T3AL features) to a cache."""
from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Iterator

import click
from tqdm.contrib.logging import logging_redirect_tqdm

from t3al.cache import T3alError, terminated_cleanly

from .defaults import CAPTION_DECODINGS, CAPTION_TEXTS, DECODE_ERROR_POLICIES, DEFAULT_MODEL, DEFAULT_PRETRAINED
from .folder import (ExtractError, ExtractUsageError, add_prompts, check_cache_dir, class_names, extract_folder, load,
                     log_to_stderr)

CAPTION_LENGTHS = click.IntRange(6, 77)  # open_clip's beam search needs more than 5 tokens; 77: the text context


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (``click.FloatRange`` lets NaN through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


POSITIVE = FiniteFloat(min=0, min_open=True)


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no subcommand, is handed to ``run``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def model_options(func=None, *, from_cache: bool = False):
    """--model, --pretrained, --model-config, --device and --precision, shared by the commands.

    With ``from_cache`` the model and tag default to the ones the cache names.
    """
    if func is None:
        return lambda f: model_options(f, from_cache=from_cache)
    origin = "from the cache" if from_cache else None
    options = [
        click.option("--model", "model_name", default=None if from_cache else DEFAULT_MODEL,
                     show_default=origin or True,
                     help="open_clip architecture; CLIP models work too (no captions then)."),
        click.option("--pretrained", default=None if from_cache else DEFAULT_PRETRAINED,
                     show_default=origin or True,
                     help="open_clip pretrained tag, or a local checkpoint file (its SHA-256 names the cache)."),
        click.option("--model-config", "model_configs", multiple=True, type=click.Path(exists=True),
                     help="Extra open_clip model config JSON (or folder of them); repeatable. "
                          "Every JSON in t3al/extract/model_configs/ is always registered."),
        click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:1, ..."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                     show_default=True, help="auto: the one the cache records." if from_cache else
                     "auto: fp16 autocast on CUDA, fp32 on CPU."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _class_names(classes: str | None, class_file: str | None, manifest: str | None) -> list[str]:
    """Class names from --classes, --class-file and --manifest, in that order, without repeats."""
    return class_names(classes.split(",") if classes else (), class_file, manifest)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """The project's errors as the command line's: a usage error for wrong arguments, else one line
    (after stage one's note of how far it got, when it has one)."""
    try:
        yield
    except ExtractUsageError as err:
        if err.option:
            raise click.BadParameter(str(err), param_hint=err.option) from None
        raise click.UsageError(str(err)) from None
    except T3alError as err:
        if isinstance(err, ExtractError) and err.note:
            click.echo(err.note, err=True)
        raise click.ClickException(str(err)) from None


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Stage one of T3AL: video features, captions and class prompts into a cache.

    \b
      t3al-extract VIDEOS_DIR CACHE_DIR [OPTIONS]     same as `t3al-extract run ...`
      t3al-extract prompts CACHE_DIR --classes A,B    add class prompts to a cache
      t3al-extract import FEATURES_DIR CACHE_DIR ...  cache from the published T3AL .npy/.txt files
      t3al-extract status CACHE_DIR [VIDEOS_DIR]      done, stale, in progress, failed, missing videos

    Without internet, give weights with --pretrained /path/to/checkpoint.
    """
    log_to_stderr()


@main.command("run", short_help="Extract a folder of videos into a cache (the default command).")
@click.argument("videos_dir", type=click.Path(path_type=Path))
@click.argument("cache_dir", type=click.Path(path_type=Path))
@model_options
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Frames per inference batch.")
@click.option("--fps", type=POSITIVE, default=None, help="Resample to this frame rate (default: every frame).")
@click.option("--caption-fps", type=FiniteFloat(min=0), default=10.0, show_default=True,
              help="Captions per second of video (public T3AL: 10 on THUMOS14, 1 on ActivityNet); 0: none.")
@click.option("--caption-batch-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Images per caption decoding batch; 0: 128 on CUDA, 16 on CPU.")
@click.option("--caption-length", type=CAPTION_LENGTHS, default=30, show_default=True,
              help="Maximum caption length in tokens (6 to 77).")
@click.option("--caption-decoding", type=click.Choice(CAPTION_DECODINGS), default="beam", show_default=True,
              help="beam: open_clip's CoCa.generate defaults (6 beams in 3 groups), as the public captions. "
                   "greedy: its top_k=1 path, the most likely token each step; about 2-3x faster on CPU.")
@click.option("--on-decode-error", type=click.Choice(DECODE_ERROR_POLICIES), default="fail", show_default=True,
              help="A video the decoder reports errors on, or that yields fewer frames than its container "
                   "declares: fail (nothing cached, reason in failures.jsonl) or keep (cache what decodes, "
                   "warnings in the video's file and in failures.jsonl).")
@click.option("--preprocess", type=click.Choice(["model", "t3al-public"]), default="model", show_default=True,
              help="model: open_clip's transform (shortest side, centre crop, RGB). t3al-public: squash to "
                   "size x size and BGR channel order, as the published T3AL features were made.")
@click.option("--dtype", "feature_dtype", type=click.Choice(["float16", "float32"]), default="float16",
              show_default=True, help="Storage type of the features.")
@click.option("--only-videos", is_flag=True, help="Leave out files whose extension is not a video's (.mp4, .mkv, "
                                                  ".webm, ...) instead of failing them as unreadable videos.")
@click.option("--shard", default="0/1", show_default=True,
              help="i/n: process only this deterministic 1/n of the videos (n processes may share one cache).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="Dataset manifest: its classes get prompts, and a copy goes into the cache.")
@click.option("--classes", help="Comma-separated class names to encode as prompts.")
@click.option("--class-file", type=click.Path(exists=True, dir_okay=False), help="Class names, one per line.")
def run(videos_dir: Path, cache_dir: Path, model_name: str, pretrained: str, model_configs: tuple[str, ...],
        device: str, precision: str, batch_size: int, fps: float | None, caption_fps: float,
        caption_batch_size: int, caption_length: int, caption_decoding: str, on_decode_error: str, preprocess: str,
        feature_dtype: str, only_videos: bool,
        shard: str, manifest: str | None, classes: str | None, class_file: str | None) -> None:
    """Extract every video of VIDEOS_DIR into CACHE_DIR (complete videos are skipped on rerun)."""
    with reported():
        names = _class_names(classes, None, None)
        with terminated_cleanly("t3al-extract"):
            done = extract_folder(
                videos_dir, cache_dir, model=model_name, pretrained=pretrained, model_configs=model_configs,
                device=device, precision=precision, batch_size=batch_size, fps=fps, caption_fps=caption_fps,
                caption_batch_size=caption_batch_size, caption_length=caption_length,
                caption_decoding=caption_decoding, on_decode_error=on_decode_error, preprocess=preprocess,
                feature_dtype=feature_dtype, only_videos=only_videos, shard=shard, manifest=manifest, classes=names,
                class_file=class_file)
    for line in done.lines():
        click.echo(line, err=True)
    if done.failed:
        sys.exit(1)


@main.command("prompts", short_help="Add class prompts to an existing cache.")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_options(from_cache=True)
@click.option("--classes", help="Comma-separated class names.")
@click.option("--class-file", type=click.Path(exists=True, dir_okay=False), help="Class names, one per line.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), help="Take the classes of this manifest.")
def prompts(cache_dir: Path, model_name: str, pretrained: str, model_configs: tuple[str, ...], device: str,
            precision: str, classes: str | None, class_file: str | None, manifest: str | None) -> None:
    """Encode class prompts into an existing cache with the model that made it.

    The model must be the cache's own (same name and tag, or the same checkpoint file), and so must
    the precision (--precision auto takes the one the cache records).
    """
    with reported():
        names = _class_names(classes, class_file, manifest)
        head = add_prompts(cache_dir, names, model=model_name, pretrained=pretrained, model_configs=model_configs,
                           device=device, precision=precision)
    click.echo(f"t3al-extract: {len(names)} prompts written; {cache_dir} now has {len(head.prompts)}", err=True)


@main.command("import", short_help="Build a cache from the published T3AL features and captions.")
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cache_dir", type=click.Path(path_type=Path))
@model_options
@click.option("--captions", "captions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of <video_id>.txt caption files (lines `<index>.jpg-<caption>`).")
@click.option("--caption-stride", type=click.IntRange(min=1), default=3, show_default=True,
              help="Caption index i belongs to frame i * stride (the public code: 3, on both datasets).")
@click.option("--caption-text", type=click.Choice(CAPTION_TEXTS), default="full", show_default=True,
              help="full: the whole caption after `<index>.jpg-`; public: only the text between the line's "
                   "first and second `-`, as the public code reads it (\"t-shirt\" becomes \"t\").")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="Manifest giving each video's fps, and the classes to encode as prompts.")
@click.option("--fps", type=POSITIVE, default=None, help="Frame rate of videos the manifest gives none for.")
@click.option("--classes", help="Comma-separated class names to encode as prompts.")
@click.option("--dtype", "feature_dtype", type=click.Choice(["float16", "float32"]), default="float32",
              show_default=True, help="Storage type of the features.")
def import_(features_dir: Path, cache_dir: Path, model_name: str, pretrained: str, model_configs: tuple[str, ...],
            device: str, precision: str, captions_dir: Path | None, caption_stride: int, caption_text: str,
            manifest: str | None, fps: float | None, classes: str | None, feature_dtype: str) -> None:
    """Build a cache from the pre-extracted T3AL features (<video_id>.npy, N x 768, pre-projection).

    The model (CoCa ViT-L/14 by default) is still needed for the projections, the class prompts and
    the captions' text features; no video is decoded.
    """
    from .importer import import_published

    with reported():
        check_cache_dir(cache_dir)
        loaded = load(model_name, pretrained, model_configs, device, precision)
        names = _class_names(classes, None, manifest)
    with logging_redirect_tqdm(), reported():
        summary = import_published(features_dir, cache_dir, loaded, names, captions_dir=captions_dir,
                                   caption_stride=caption_stride, manifest=manifest, fps=fps,
                                   feature_dtype=feature_dtype, caption_text=caption_text)
    click.echo(f"t3al-extract import: {summary.line()} -> {cache_dir}", err=True)
    if summary.failed:
        sys.exit(1)


@main.command("status", short_help="Show how far the jobs filling a cache have got.")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("videos_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Videos listed per state; 0: all.")
@click.option("--json", "as_json", is_flag=True, help="Every video and reason as JSON, for scripts.")
@click.option("--verify", is_flag=True,
              help="Read every array of every file back (finite features and timestamps, timestamps "
                   "increasing); default: open each file's arrays only, quick on large caches.")
def status(cache_dir: Path, videos_dir: Path | None, limit: int, as_json: bool, verify: bool) -> None:
    """Count and list the videos of CACHE_DIR by state, read-only (safe while jobs run).

    \b
      done         complete file, from the source as it is now (listed if kept with decode warnings)
      stale        complete file, but its source changed, or it is truncated or damaged: rerun
                   redoes it (damage only --verify finds: delete the file, then rerun)
      in progress  a job is extracting it (or, an hour without a step, was left by a killed job:
                   the next run removes its mark)
      failed       recorded in failures.jsonl and still absent, with the reason
      missing      a video file of VIDEOS_DIR (by its extension; else a video of the cache's
                   manifest) not yet in the cache

    Without VIDEOS_DIR, sources are not checked for changes. An unreadable head.h5 gets a line.
    """
    from .status import cache_status, format_status  # reads video folders with the extraction's own rules

    with reported():
        report = cache_status(cache_dir, videos_dir, verify=verify)
    click.echo(report.to_json() if as_json else format_status(report, limit))
