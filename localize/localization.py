"""``localize(videos_or_cache, actions)``: the Python API behind ``t3al-localize``.

Stage one where needed (``t3al.extract.extract_folder``, or ``add_prompts`` on a cache), the action
names as prompts, stage two on every cached video with that vocabulary, and a run folder with the
detections, the presences and the viewer. Errors are ``LocalizeError`` with a one-line message.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from tqdm import tqdm

from t3al.adapt.algorithm.distractors import DEFAULT_THRESHOLD, distractors_for
from t3al.adapt.config import DEFAULT_PRESET, ConfigError
from t3al.adapt.engine.spec import RunSpec, check_execution, resolve_configs, run_name
from t3al.cache import CacheReader, T3alError
from t3al.cache.schema import INFO_FILE

from .actions import ActionsError, parse_actions

if TYPE_CHECKING:  # stage one and two (torch) load when a run starts, so importing this is quick
    from t3al.adapt.engine.pipeline import ConfigRun
    from t3al.evaluate.results import Detections

FPS = 2.0  # stage one's defaults here: a CPU extracts a minute of video in minutes (README)
CAPTION_FPS = 1.0
log = logging.getLogger("t3al.localize")


class LocalizeError(T3alError):
    """The run cannot start or stopped; the message says why in one line."""


class LocalizeUsageError(LocalizeError):
    """The arguments are wrong or contradict each other."""


class StageError(LocalizeError):
    """Stage one stopped; its own message says why."""


@dataclass(frozen=True)
class Detection:
    """One detected segment: ``label`` from ``start`` to ``end`` seconds of ``video``."""

    video: str
    label: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Localization:
    """A finished ``localize`` run: its folder (detections.json, detections.csv, presence.csv under
    the open set, curves, index.html), the detections, the presences (video -> action -> presence,
    None in the closed world), stage two's run (problems, warnings) and stage one's failures."""

    folder: Path
    spec: RunSpec
    run: ConfigRun
    table: Detections
    presences: Mapping[str, Mapping[str, float]] | None
    extraction_failures: int = 0

    @property
    def detections(self) -> list[Detection]:
        return [Detection(str(v), str(lab), float(s), float(e), float(c)) for v, s, e, c, lab in
                zip(self.table.video, self.table.start, self.table.end, self.table.score, self.table.label)]

    @property
    def problems(self) -> list:
        return self.run.problems

    def write_json(self, path: str | Path) -> None:
        """The detections in the ActivityNet results format, as the run folder's detections.json."""
        from t3al.adapt.engine.output import external_data
        from t3al.adapt.engine.pipeline import run_record

        self.table.write_json(_folder_for(path), external_data(run_record(self.spec, self.spec.name)), self.presences)

    def write_csv(self, path: str | Path) -> None:
        """The detections as CSV (video, start, end, score, label), as the run folder's detections.csv."""
        self.table.write_csv(_folder_for(path))

    def write_viewer(self, path: str | Path, thumbnails: int = 3) -> None:
        """The viewer page of this run (thumbnails: detections per video shown with frames)."""
        page = _folder_for(path)
        _viewer(self.spec, self.folder, page, page.parent, thumbnails, str(self.spec.reader.root))


def _folder_for(path: str | Path) -> Path:
    """``path``, its folder made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def default_cache(folder: Path) -> Path:
    """``caches/<folder name>-<8 hex digits of its absolute path>``: one cache per folder, so two
    folders that share a name (``videos``) never share a cache."""
    where = folder.resolve()
    digest = hashlib.sha1(str(where).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path("caches") / f"{where.name}-{digest}"


def _check_videos_folder(folder: Path, note: Callable[[str], None]) -> None:
    """A folder that is not a cache must hold videos (one clear line when it holds none); files
    that are not videos by their extension are skipped with one note."""
    from t3al.extract.listing import VIDEO_SUFFIXES, is_other_file, list_videos

    if not list_videos(folder, only_videos=True)[0]:
        raise LocalizeError(f"{folder}: no videos here ({', '.join(sorted(VIDEO_SUFFIXES)[:6])}, ...) and "
                            f"not a t3al cache (no {INFO_FILE})")
    others = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and is_other_file(p))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        note(f"note: {len(others)} file(s) skipped, not videos by their extension: {shown}")


def _check_captions(spec: RunSpec) -> None:
    """Caption-guided suppression drops every segment of a video without captions: refuse it."""
    if not spec.config.suppression:
        return
    bare = [v for v in spec.videos if spec.reader.caption_count(v) == 0]
    if bare:
        raise ConfigError(f"suppression needs captions, and {len(bare)} of {len(spec.videos)} video(s) have none in "
                          f"{spec.reader.root} (e.g. {bare[0]}): pass --no-suppression, or extract with a CoCa model "
                          "and --caption-fps above 0", "suppression")


def _viewer(spec: RunSpec, run_dir: Path, page: Path, page_dir: Path, thumbnails: int, cache: str) -> None:
    """Write the viewer page ``page`` from the outputs in ``run_dir``, its links relative to ``page_dir``."""
    from t3al.evaluate.presence import read_presences

    from .viewer import collect_views, write_viewer

    threshold = spec.config.presence_threshold
    rule = ("closed world: every video its most likely action" if threshold is None
            else f"open set: actions of presence {threshold:g} or more")
    details = [f"{len(spec.videos)} video(s) of {cache}, actions: {', '.join(spec.classes)}",
               f"run {spec.name}; model {spec.reader.info.model.describe()}; {rule}"]
    presences = None if threshold is None else read_presences(run_dir / "detections.json")
    views = collect_views(run_dir, spec.reader, spec.classes, spec.videos, thumbnails, presences,
                          page_dir=page_dir)
    write_viewer(page, views, spec.classes, f"t3al-localize: {spec.name}", details, threshold)


def _action_names(actions: str | Sequence[str]) -> list[str]:
    try:
        return parse_actions(actions if isinstance(actions, str) else ", ".join(
            '"' + name.replace('"', "") + '"' if "," in name else name for name in actions)).names
    except ActionsError as error:
        raise LocalizeUsageError(str(error)) from None


def _stage_one(source: Path, cache: Path, is_cache: bool, prompts: list[str], closed_world: bool,
               note: Callable[[str], None], **extract: Any) -> int:
    """Extract ``source`` into ``cache`` (a folder of videos; cached ones reused), or add the prompts a
    cache lacks; the number of videos that failed."""
    from t3al.extract.folder import ExtractError, add_prompts, extract_folder

    try:
        if is_cache:
            missing = [name for name in prompts if name not in CacheReader(cache).head().class_names]
            if missing:
                head = add_prompts(cache, missing, pretrained=extract["pretrained"],
                                   model_configs=extract["model_configs"], device=extract["device"])
                note(f"t3al-extract: {len(missing)} prompts written; {cache} now has {len(head.prompts)}")
            return 0
        _check_videos_folder(source, note)
        done = extract_folder(source, cache, only_videos=True, classes=prompts, **{
            key: value for key, value in extract.items() if value is not None})
    except ExtractError as error:
        message = f"stage one: {error}"
        if is_cache and not closed_world:
            message += (" (the open set compares each action with distractor actions whose prompts the cache "
                        "lacks; --closed-world needs none)")
        if error.note:
            note(error.note)
        raise StageError(message) from None
    for line in done.lines():
        note(line)
    return done.failed


def localize(videos_or_cache: str | Path, actions: str | Sequence[str], *, cache: str | Path | None = None,
             videos: Sequence[str] = (), out: str | Path | None = None, thumbnails: int = 3,
             model: str | None = None, pretrained: str | None = None, model_configs: Sequence[str] = (),
             extract_device: str = "auto", fps: float = FPS, caption_fps: float = CAPTION_FPS,
             closed_world: bool = False, preset: str | None = None, config_file: str | Path | None = None,
             settings: Mapping[str, Any] | None = None, seed: int = 0, jobs: int | None = None,
             scheduler: str | None = None, device: str | None = None, overwrite: bool = False,
             progress: bool = False, note: Callable[[str], None] | None = None) -> Localization:
    """Find ``actions`` (names, or one comma-separated string) in a folder of videos or a t3al cache.

    The options are ``t3al-localize``'s (``settings``: stage two's settings by name, as the
    command's setting options); ``note`` receives the progress and warning lines the command prints
    on stderr (default: the ``t3al.localize`` logger). The run folder is written whole or not at all.
    """
    from t3al.adapt.engine.vocabulary import build_vocabulary_spec, localize_vocabulary
    from t3al.evaluate.presence import read_presences
    from t3al.evaluate.results import Detections

    note = note or log.info
    source = Path(videos_or_cache)
    names = _action_names(actions)
    settings = dict(settings or {})
    is_cache = (source / INFO_FILE).is_file()
    if is_cache and cache is not None and Path(cache).resolve() != source.resolve():
        raise LocalizeUsageError(f"{source} is a cache itself: leave out --cache {cache}")
    try:  # settings and where the work runs are resolved before stage one writes anything
        configs = resolve_configs(preset or DEFAULT_PRESET, config_file, settings, seed=seed)
        execution = check_execution(jobs, scheduler, device)
    except ConfigError as err:
        raise LocalizeUsageError(str(err)) from None
    config = next(iter(configs.values()))
    if config.labels_per_video > len(names):
        note(f"note: --labels-per-video {config.labels_per_video} is more than the {len(names)} "
             f"action(s): each video gets at most {len(names)} label(s)")
    if config.suppression and caption_fps == 0:
        raise LocalizeUsageError("--caption-fps 0 gives no captions and suppression needs them: add --no-suppression")
    if closed_world and config.presence_threshold is not None:
        raise LocalizeUsageError("--closed-world gives every video its most likely action: leave out "
                                 "--presence-threshold (and presence_threshold from --config)")
    if not closed_world and config.presence_threshold is None:  # the open set, unless --config set its threshold
        try:
            config = config.replace(presence_threshold=DEFAULT_THRESHOLD)
        except ConfigError as err:
            raise LocalizeUsageError(f"the open set (the default; --closed-world gives every video its most likely "
                                     f"action): {err}") from None
        configs = {run_name(config, preset or DEFAULT_PRESET, seed): config}
    prompts = names + ([] if closed_world else distractors_for(names))
    cache = source if is_cache else Path(cache) if cache is not None else default_cache(source)
    failed = _stage_one(source, cache, is_cache, prompts, closed_world, note, model=model, pretrained=pretrained,
                        model_configs=tuple(model_configs), device=extract_device, fps=fps, caption_fps=caption_fps)
    try:
        spec = build_vocabulary_spec(cache, names, configs, videos=[v.strip() for v in videos if v.strip()],
                                     preset=preset, seed=seed, execution=execution)
        _check_captions(spec)
        folder = Path(out) if out is not None else Path("runs") / cache.resolve().name / "localize" / spec.name

        def pages(temporary: Path, final: Path) -> None:
            _viewer(spec, temporary, temporary / "index.html", final, thumbnails, str(cache))

        with tqdm(total=len(spec.videos), unit="video", disable=not progress, desc="localize") as bar:
            run = localize_vocabulary(spec, folder, overwrite=overwrite, on_video=bar.update, pages=pages)
    except LocalizeError:
        raise
    except T3alError as err:
        raise LocalizeError(str(err)) from None
    presences = None if spec.config.presence_threshold is None else read_presences(folder / "detections.json")
    return Localization(folder, spec, run, Detections.read(folder / "detections.json"), presences, failed)
