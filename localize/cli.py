"""``t3al-localize VIDEOS_OR_CACHE --actions "a, b"``: your videos, your action names, a page to look at.

A thin command line over ``t3al.localize.localize`` (and ``--live`` over ``localize.live``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from t3al.adapt.algorithm.distractors import DEFAULT_THRESHOLD
from t3al.adapt.options import execution_options, report_runs, setting_options
from t3al.cache import terminated_cleanly
from t3al.extract.folder import log_to_stderr

from .actions import ActionsError, parse_actions
from .localization import CAPTION_FPS, FPS, LocalizeError, LocalizeUsageError, default_cache, localize

__all__ = ["default_cache", "main"]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("source", metavar="VIDEOS_OR_CACHE", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--live", metavar="SOURCE", help="Localize a stream as it arrives (anything ffmpeg reads: a named "
                                               "pipe, a growing file, udp://, rtsp://, http://) into --cache, with "
                                               "the online protocol; each detection is appended to "
                                               "detections.jsonl when emitted (docs/online.md).")
@click.option("--actions", "actions_text", metavar='"A, B"',
              help='Action names, comma-separated; a name with a comma in double quotes ("pick up, put down").')
@click.option("--actions-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Action names, one per line (UTF-8); lines starting with # are comments.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cache for a folder of videos; default caches/<folder name>-<hash of its path>. Videos already "
                   "in it are reused.")
@click.option("--videos", "video_list", metavar="LIST", help="Localize only these cached videos (comma-separated).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; default runs/<cache>/localize/<run name>.")
@click.option("--thumbnails", type=click.IntRange(min=0), default=3, show_default=True,
              help="Detections per video shown with frames (start, middle, end) from the source video; 0: none.")
@click.option("--model", "model_name", help="Stage one: open_clip model (default: t3al-extract's).")
@click.option("--pretrained", help="Stage one: pretrained tag or checkpoint file (a cache made from a checkpoint "
                                   "needs it to encode new action names).")
@click.option("--model-config", "model_configs", multiple=True, type=click.Path(exists=True),
              help="Stage one: extra open_clip model config JSON (repeatable).")
@click.option("--extract-device", default="auto", show_default=True, help="Stage one's device (auto, cpu, cuda:N).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=FPS, show_default=True,
              help="Stage one: frames per second sampled for features (a CPU's main cost with --caption-fps; "
                   "t3al-extract's default, every frame, is for GPUs; --live reads every frame).")
@click.option("--caption-fps", type=click.FloatRange(min=0), default=CAPTION_FPS, show_default=True,
              help="Stage one: captions per second (t3al-extract's default: 10); 0: none, with --no-suppression.")
@click.option("--closed-world", is_flag=True,
              help="The benchmark's rule: every video gets detections of its most likely action, present or not "
                   f"(default: open set, --presence-threshold {DEFAULT_THRESHOLD:g}).")
@execution_options
def main(**options: Any) -> None:
    """Find the named actions in your videos: no manifest, no splits, no ground truth.

    VIDEOS_OR_CACHE is a folder of videos (stage one extracts it into --cache, reusing videos
    already there) or a t3al cache. Videos are the files named .3g2 .3gp .asf .avi .flv .m2ts
    .m4v .mkv .mov .mp4 .mpeg .mpg .mts .ogv .ts .webm .wmv (any case); other files are skipped
    with a note. The action names are encoded as prompts (names the cache already has are not
    re-encoded), then stage two localizes every cached video (or --videos) with that vocabulary,
    through the same settings, run names and paths as t3al-adapt. The run folder gets
    detections.json (ActivityNet results), detections.csv, config.json, the curves and
    index.html, the viewer.

    Open set by default: each action's presence in each video (docs/presence.md) is compared with
    --presence-threshold, and only present actions get detections, scored presence x segment score;
    the presences are in detections.json and presence.csv. --closed-world gives every video its
    most likely action, as the benchmarks do.

    Example: t3al-localize my_videos/ --actions "pole vault, high jump"
    """
    with terminated_cleanly("t3al-localize"):  # kill or Ctrl-C: the run folder and temporary files go, exit 143/130
        run_command(**options)


def run_command(source: Path | None, live: str | None, actions_text: str | None, actions_file: Path | None,
                cache_dir: Path | None, video_list: str | None, out: Path | None, thumbnails: int,
                model_name: str | None, pretrained: str | None, model_configs: tuple[str, ...], extract_device: str,
                fps: float, caption_fps: float, closed_world: bool, preset: str | None, config_file: Path | None,
                seed: int, jobs: int | None, scheduler: str | None, device: str | None, overwrite: bool,
                allow_failures: bool, progress: bool, **options: Any) -> None:
    """``t3al-localize`` with its options: ``localize()`` (or the live run), then its report."""
    try:
        actions = parse_actions(actions_text, actions_file)
    except ActionsError as error:
        raise click.UsageError(str(error)) from None
    for note in actions.notes:
        click.echo(f"note: {note}", err=True)
    settings = setting_options(options)
    if live is not None or source is None:
        from .live import live_main

        live_main(live, source, actions.names, cache_dir, out, settings, preset, config_file, seed, model_name,
                  pretrained, model_configs, extract_device, caption_fps, overwrite, progress)
        return
    log_to_stderr()
    try:
        result = localize(source, actions.names, cache=cache_dir, videos=video_list.split(",") if video_list else (),
                          out=out, thumbnails=thumbnails, model=model_name, pretrained=pretrained,
                          model_configs=model_configs, extract_device=extract_device, fps=fps,
                          caption_fps=caption_fps, closed_world=closed_world, preset=preset, config_file=config_file,
                          settings=settings, seed=seed, jobs=jobs, scheduler=scheduler, device=device,
                          overwrite=overwrite, progress=progress, note=lambda line: click.echo(line, err=True))
    except LocalizeUsageError as err:
        raise click.UsageError(str(err)) from None
    except LocalizeError as err:
        raise click.ClickException(str(err)) from None
    name, folder = result.spec.name, result.folder
    problems = report_runs({name: result.run}, {name: folder})
    click.echo(f"{result.run.document['n_detections']} detection(s) in {result.run.document['n_videos']} video(s): "
               f"{folder / 'detections.json'}")
    if result.presences is not None:
        threshold = result.spec.config.presence_threshold
        absent = sum(all(p < threshold for p in row.values()) for row in result.presences.values())
        click.echo(f"{absent} of {len(result.presences)} video(s) hold none of the named actions (presence below "
                   f"{threshold:g}); presences: {folder / 'presence.csv'}")
    click.echo(f"viewer: {folder / 'index.html'}")
    if (problems or result.extraction_failures) and not allow_failures:
        click.echo("some videos failed (listed above); rerun with --allow-failures to accept", err=True)
        sys.exit(1)
