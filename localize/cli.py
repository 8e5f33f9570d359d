"""``t3al-localize VIDEOS_OR_CACHE --actions "a, b"``: your videos, your action names, a page to look at."""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tqdm import tqdm

from t3al.adapt.cli import execution_options, report_runs, setting_options
from t3al.adapt.cluster import ClusterError
from t3al.adapt.config import DEFAULT_PRESET, ConfigError
from t3al.adapt.output import OutputError
from t3al.adapt.distractors import DEFAULT_THRESHOLD, distractors_for
from t3al.adapt.spec import check_execution, resolve_configs
from t3al.cache import CacheError, CacheReader
from t3al.cache.schema import INFO_FILE

from .actions import ActionsError, parse_actions

if TYPE_CHECKING:  # stage two (torch) loads when a run starts, so --help answers at once
    from t3al.adapt.vocabulary import VocabularySpec


FPS = 2.0  # stage one's defaults here: a CPU extracts a minute of video in minutes (README)
CAPTION_FPS = 1.0


class StageError(click.ClickException):
    """Stage one (t3al-extract) stopped; its own message says why."""


def _extract(args: list[str]) -> int:
    """Run ``t3al-extract ARGS`` in this process; its exit status (1: some videos failed)."""
    from t3al.extract.cli import main as extract_main

    try:
        extract_main.main(args=args, prog_name="t3al-extract", standalone_mode=False)
    except SystemExit as exit_:
        if int(exit_.code or 0) > 1:  # stopped by a signal (143, 130): its cache may be partial, stop here
            raise
        return int(exit_.code or 0)
    except click.ClickException as error:
        raise StageError(f"stage one: {error.format_message()}") from None
    return 0


def _class_file(folder: str, names: list[str]) -> str:
    path = Path(folder) / "actions.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return str(path)


def _check_videos_folder(folder: Path) -> None:
    """A folder that is not a cache must hold videos (one clear line when it holds none); files
    that are not videos by their extension are skipped with one note."""
    from t3al.extract.listing import VIDEO_SUFFIXES, is_other_file, list_videos

    if not list_videos(folder, only_videos=True)[0]:
        raise click.ClickException(f"{folder}: no videos here ({', '.join(sorted(VIDEO_SUFFIXES)[:6])}, ...) and "
                                   f"not a t3al cache (no {INFO_FILE})")
    others = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and is_other_file(p))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        click.echo(f"note: {len(others)} file(s) skipped, not videos by their extension: {shown}", err=True)


def _stage_one(source: Path, cache: Path, names: list[str], extract_args: list[str]) -> int:
    """Extract the videos of ``source`` into ``cache`` (cached ones reused) with the action prompts."""
    _check_videos_folder(source)
    with tempfile.TemporaryDirectory(prefix="t3al-localize-") as folder:
        return _extract(["run", str(source), str(cache), "--only-videos", "--class-file", _class_file(folder, names),
                         *extract_args])


def _add_prompts(cache: Path, names: list[str], pretrained: str | None, model_configs: tuple[str, ...],
                 extract_device: str) -> None:
    """Encode the prompts of the names the cache lacks with the cache's model (none: no model is loaded)."""
    missing = [name for name in names if name not in CacheReader(cache).head().class_names]
    if not missing:
        return
    options = [arg for path in model_configs for arg in ("--model-config", path)]
    options += ["--pretrained", pretrained] if pretrained else []
    with tempfile.TemporaryDirectory(prefix="t3al-localize-") as folder:
        _extract(["prompts", str(cache), "--class-file", _class_file(folder, missing), "--device", extract_device,
                  *options])


def _check_captions(spec: VocabularySpec) -> None:
    """Caption-guided suppression drops every segment of a video without captions: refuse it."""
    if not spec.config.suppression:
        return
    bare = [v for v in spec.videos if spec.reader.caption_count(v) == 0]
    if bare:
        raise ConfigError(f"suppression needs captions, and {len(bare)} of {len(spec.videos)} video(s) have none in "
                          f"{spec.reader.root} (e.g. {bare[0]}): pass --no-suppression, or extract with a CoCa model "
                          "and --caption-fps above 0", "suppression")


def default_cache(folder: Path) -> Path:
    """``caches/<folder name>-<8 hex digits of its absolute path>``: one cache per folder, so two
    folders that share a name (``videos``) never share a cache."""
    where = folder.resolve()
    digest = hashlib.sha1(str(where).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path("caches") / f"{where.name}-{digest}"


def _extract_options(model_name: str | None, pretrained: str | None, model_configs: tuple[str, ...],
                     extract_device: str, fps: float, caption_fps: float) -> list[str]:
    options = ["--device", extract_device, "--fps", f"{fps:g}", "--caption-fps", f"{caption_fps:g}"]
    options += ["--model", model_name] if model_name else []
    options += ["--pretrained", pretrained] if pretrained else []
    options += [arg for path in model_configs for arg in ("--model-config", path)]
    return options


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
                   "t3al-extract's default, every frame, is for GPUs).")
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
    from t3al.extract.cli import terminated_cleanly

    with terminated_cleanly():  # kill or Ctrl-C: the claimed run folder and temporary files go, exit 143 or 130
        localize(**options)


def localize(source: Path | None, live: str | None, actions_text: str | None, actions_file: Path | None,
             cache_dir: Path | None, video_list: str | None, out: Path | None, thumbnails: int,
             model_name: str | None, pretrained: str | None, model_configs: tuple[str, ...], extract_device: str,
             fps: float, caption_fps: float, closed_world: bool, preset: str | None, config_file: Path | None,
             seed: int, jobs: int | None, scheduler: str | None, device: str | None, overwrite: bool,
             allow_failures: bool, progress: bool,
             **options: Any) -> None:
    """``t3al-localize`` with its options: names, stage one, stage two, the run folder and its viewer."""
    from t3al.adapt.vocabulary import build_vocabulary_spec, localize_vocabulary
    from t3al.evaluate.presence import read_presences

    from .viewer import collect_views, write_viewer

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
    is_cache = (source / INFO_FILE).is_file()
    if is_cache and cache_dir is not None and cache_dir.resolve() != source.resolve():
        raise click.UsageError(f"{source} is a cache itself: leave out --cache {cache_dir}")
    try:  # settings and where the work runs are checked before stage one writes anything
        config = next(iter(resolve_configs(preset or DEFAULT_PRESET, config_file, settings, seed=seed).values()))
        check_execution(jobs, scheduler, device)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    if config.labels_per_video > len(actions.names):
        click.echo(f"note: --labels-per-video {config.labels_per_video} is more than the {len(actions.names)} "
                   f"action(s): each video gets at most {len(actions.names)} label(s)", err=True)
    if config.suppression and caption_fps == 0:
        raise click.UsageError("--caption-fps 0 gives no captions and suppression needs them: add --no-suppression")
    if closed_world and config.presence_threshold is not None:
        raise click.UsageError("--closed-world gives every video its most likely action: leave out "
                               "--presence-threshold (and presence_threshold from --config)")
    if not closed_world and config.presence_threshold is None:  # the open set, unless --config set its threshold
        settings["presence_threshold"] = DEFAULT_THRESHOLD
    prompts = actions.names + ([] if closed_world else distractors_for(actions.names))
    failed = 0
    cache = source if is_cache else cache_dir or default_cache(source)
    if is_cache:
        try:
            _add_prompts(cache, prompts, pretrained, model_configs, extract_device)
        except StageError as error:
            if closed_world:
                raise
            raise StageError(f"{error.format_message()} (the open set compares each action with distractor "
                             "actions whose prompts the cache lacks; --closed-world needs none)") from None
    else:
        failed = _stage_one(source, cache, prompts, _extract_options(model_name, pretrained, model_configs,
                                                                     extract_device, fps, caption_fps))
    try:
        chosen = [v.strip() for v in video_list.split(",") if v.strip()] if video_list else []
        spec = build_vocabulary_spec(cache, actions.names, videos=chosen, preset=preset, config_file=config_file,
                                     options=settings, seed=seed, jobs=jobs, scheduler=scheduler, device=device)
        _check_captions(spec)
        folder = out or Path("runs") / cache.resolve().name / "localize" / spec.name
        threshold = spec.config.presence_threshold
        rule = ("closed world: every video its most likely action" if threshold is None
                else f"open set: actions of presence {threshold:g} or more")
        details = [f"{len(spec.videos)} video(s) of {cache}, actions: {', '.join(spec.classes)}",
                   f"run {spec.name}; model {spec.reader.info.model.describe()}; {rule}"]

        def viewer(temporary: Path, final: Path) -> None:
            presences = None if threshold is None else read_presences(temporary / "detections.json")
            views = collect_views(temporary, spec.reader, spec.classes, spec.videos, thumbnails, presences,
                                  page_dir=final)
            write_viewer(temporary / "index.html", views, spec.classes, f"t3al-localize: {spec.name}", details,
                         threshold)

        with tqdm(total=len(spec.videos), unit="video", disable=not progress, desc="localize") as bar:
            run = localize_vocabulary(spec, folder, overwrite=overwrite, on_video=bar.update, pages=viewer)
    except (CacheError, ClusterError, ConfigError, OutputError) as err:
        raise click.ClickException(str(err)) from None
    problems = report_runs({spec.name: run}, {spec.name: folder})
    click.echo(f"{run.document['n_detections']} detection(s) in {run.document['n_videos']} video(s): "
               f"{folder / 'detections.json'}")
    if threshold is not None:
        presences = read_presences(folder / "detections.json")
        absent = sum(all(p < threshold for p in row.values()) for row in presences.values())
        click.echo(f"{absent} of {len(presences)} video(s) hold none of the named actions (presence below "
                   f"{threshold:g}); presences: {folder / 'presence.csv'}")
    click.echo(f"viewer: {folder / 'index.html'}")
    if (problems or failed) and not allow_failures:
        click.echo("some videos failed (listed above); rerun with --allow-failures to accept", err=True)
        sys.exit(1)
