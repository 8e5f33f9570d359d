"""Stage one as Python functions: ``extract_folder`` (a folder of videos into a cache) and
``add_prompts`` (class prompts into a cache). ``t3al-extract`` and ``t3al-localize`` are thin
wrappers over them; errors are ``ExtractError`` with a one-line message, never a command line's."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tqdm.contrib.logging import logging_redirect_tqdm

from t3al.cache import CacheError, CacheReader, CacheWriter, DiskFullError, T3alError, check_writable

from .defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED

if TYPE_CHECKING:  # torch and open_clip load inside the functions, so importing this module is quick
    from t3al.cache import Head

    from .failures import Summary
    from .models import LoadedModel

log = logging.getLogger("t3al.extract")


class ExtractError(T3alError):
    """Stage one could not start or stopped; the message says why in one line. ``note`` is a line
    to show before it (how far the run got)."""

    def __init__(self, message: str, note: str | None = None) -> None:
        super().__init__(message)
        self.note = note


class ExtractUsageError(ExtractError):
    """The arguments are wrong (``option``: the one at fault, when one is)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class FolderExtraction:
    """What ``extract_folder`` did: the per-video summary and this shard's share of the folder."""

    cache: Path
    summary: Summary
    shard: str
    entries: int  # the folder's entries in this shard
    total: int  # the folder's entries

    @property
    def failed(self) -> int:
        """How many videos failed (listed in the cache's failures.jsonl)."""
        return len(self.summary.failed)

    def lines(self) -> list[str]:
        """The closing report, as t3al-extract prints it."""
        lines = [f"t3al-extract: {self.summary.line()} (shard {self.shard}: {self.entries} of the folder's "
                 f"{self.total} entries) -> {self.cache}"]
        if self.failed:
            lines.append(f"t3al-extract: failures listed in {self.cache / 'failures.jsonl'}")
        return lines


def log_to_stderr() -> None:
    """Stage one's progress notes on stderr, as ``t3al-extract: ...`` lines (the commands call this)."""
    logging.basicConfig(level=logging.WARNING, format="t3al-extract: %(message)s")
    log.setLevel(logging.INFO)


def load(model_name: str, pretrained: str, model_configs: Sequence[str], device: str, precision: str) -> LoadedModel:
    """The open_clip model, with the extra model configs registered first."""
    from .models import ModelLoadError, load_model, register_model_configs

    try:
        register_model_configs(*model_configs)
        return load_model(model_name, pretrained, device, precision)
    except ModelLoadError as err:
        raise ExtractError(str(err)) from None


def check_cache_dir(cache_dir: Path) -> None:
    """A folder that can become (or is) a cache, writable."""
    from .provenance import check_cache_dir as check_contents

    try:
        check_contents(cache_dir)
        check_writable(cache_dir)
    except CacheError as err:
        raise ExtractError(str(err)) from None


def class_names(classes: Sequence[str] = (), class_file: str | Path | None = None,
                manifest: str | Path | None = None) -> list[str]:
    """Class names from ``classes``, ``class_file`` and ``manifest``, in that order, without repeats."""
    from t3al.manifests import Manifest, ManifestError, read_class_list

    names = [c.strip() for c in classes if c.strip()]
    try:
        if class_file:
            names += read_class_list(class_file)
        if manifest:
            names += list(Manifest.load(manifest).classes)
    except ManifestError as err:
        raise ExtractError(str(err)) from None
    return list(dict.fromkeys(names))


def check_prompt_lengths(loaded: LoadedModel, names: Sequence[str], template: str) -> None:
    """Refuse class names whose prompt the text tower would cut (two such names could get one
    feature): tokens are counted with the model's own tokenizer."""
    from .models import class_prompt, prompt_tokens

    limit = loaded.tokenizer.context_length
    counts = prompt_tokens(loaded, [class_prompt(name, template) for name in names])
    long = [(name, count) for name, count in zip(names, counts) if count > limit]
    if long:
        name, count = long[0]
        more = f" (and {len(long) - 1} more)" if len(long) > 1 else ""
        raise ExtractError(f"class name {name[:60]!r}{'...' if len(name) > 60 else ''}: its prompt is "
                           f"{count} tokens and the text tower reads {limit}; shorten it{more}")


def ensure_prompts(writer: CacheWriter, loaded: LoadedModel, names: Sequence[str]) -> None:
    """Write the head when the cache has none; add prompts of classes it lacks."""
    from .models import class_prompt, encode_texts, model_head

    reader = CacheReader(writer.root)
    if not (writer.root / "head.h5").is_file():
        writer.write_head(model_head(loaded, list(names), writer.info.prompt_template))
        return
    missing = [name for name in names if name not in reader.head().class_names]
    if missing:
        prompts = [class_prompt(name, writer.info.prompt_template) for name in missing]
        writer.add_prompts(missing, prompts, encode_texts(loaded, prompts))


def extract_folder(videos: str | Path, cache: str | Path, *, model: str = DEFAULT_MODEL,
                   pretrained: str = DEFAULT_PRETRAINED, model_configs: Sequence[str] = (), device: str = "auto",
                   precision: str = "auto", batch_size: int = 64, fps: float | None = None,
                   caption_fps: float = 10.0, caption_batch_size: int = 0, caption_length: int = 30,
                   caption_decoding: str = "beam", on_decode_error: str = "fail", preprocess: str = "model",
                   feature_dtype: str = "float16", only_videos: bool = False, shard: str = "0/1",
                   manifest: str | Path | None = None, classes: Sequence[str] = (),
                   class_file: str | Path | None = None) -> FolderExtraction:
    """Extract every video of ``videos`` into ``cache`` (complete videos are skipped on rerun), with
    the prompts of ``classes``, ``class_file`` and ``manifest``'s classes; the options are
    ``t3al-extract run``'s. Videos that fail are recorded in the cache's failures.jsonl and counted
    in the result; ``ExtractError`` when the run cannot start or stops (device fault, full disk)."""
    from .captions import CaptionError
    from .extractor import DeviceFault, Extractor, Settings
    from .failures import Summary, fail
    from .listing import in_shard, list_videos, parse_shard
    from .video_loop import run_folder
    from .provenance import cache_info, open_cache

    videos, cache = Path(videos), Path(cache)
    if not videos.is_dir():
        raise ExtractError(f"{videos}: no such folder")
    try:
        shard_spec = parse_shard(shard)
    except ValueError as err:
        raise ExtractUsageError(str(err), "--shard") from None
    found, refused = list_videos(videos, only_videos)
    if not found and not refused:
        raise ExtractError(f"{videos}: no files to extract")
    names = class_names(classes, class_file, manifest)
    check_cache_dir(cache)
    loaded = load(model, pretrained, model_configs, device, precision)
    settings = Settings(batch_size=batch_size, fps=fps, caption_fps=caption_fps, caption_length=caption_length,
                        caption_batch_size=caption_batch_size, caption_decoding=caption_decoding, preprocess=preprocess,
                        on_decode_error=on_decode_error)
    try:
        extractor = Extractor(loaded, settings)
        wanted = cache_info(loaded, settings, feature_dtype)
    except CaptionError as err:
        raise ExtractError(f"--caption-length/--caption-decoding: {err}") from None
    check_prompt_lengths(loaded, names, wanted.prompt_template)
    try:
        writer = open_cache(cache, wanted)
        if manifest:
            writer.attach_manifest(manifest)
        ensure_prompts(writer, loaded, names)
    except CacheError as err:
        raise ExtractError(str(err)) from None
    summary = Summary()
    for video_id, path, reason in refused:
        if in_shard(video_id, shard_spec):
            fail(writer, summary, video_id, path, reason)
    mine = [v for v in found if in_shard(v.video_id, shard_spec)]
    entries = len(mine) + sum(in_shard(video_id, shard_spec) for video_id, _, _ in refused)
    if not loaded.can_caption and caption_fps > 0:
        log.info("%s has no caption decoder: no captions", model)
    with logging_redirect_tqdm():
        try:
            run_folder(mine, writer, extractor, summary)
        except DiskFullError as err:
            raise ExtractError(str(err), note=f"t3al-extract: {summary.line()} before the disk filled up") from None
        except DeviceFault as err:  # one line: every later video would fail the same way
            raise ExtractError(f"device fault: {err} ({summary.line()} before it)") from None
    return FolderExtraction(cache, summary, shard, entries, len(found) + len(refused))


def add_prompts(cache: str | Path, names: Sequence[str], *, model: str | None = None, pretrained: str | None = None,
                model_configs: Sequence[str] = (), device: str = "auto", precision: str = "auto") -> Head:
    """Encode the prompts of ``names`` into an existing cache with the model that made it (``model``
    and ``pretrained`` default to the cache's; a cache made from a checkpoint file needs its path);
    precision "auto" takes the one the cache records. Returns the cache's new head."""
    from .models import class_prompt, encode_texts
    from .provenance import precision_mismatch

    cache = Path(cache)
    if not names:
        raise ExtractUsageError("give classes with --classes, --class-file or --manifest")
    try:
        info = CacheReader(cache).info
        if pretrained is None and not info.model.pretrained:
            raise ExtractUsageError(f"{cache} was made from a checkpoint file: give it with --pretrained")
        recorded = info.preprocess.get("precision")
        loaded = load(model or info.model.name, pretrained or info.model.pretrained, model_configs,
                      device, recorded if precision == "auto" and recorded else precision)
        mismatch = precision_mismatch(info, loaded)
        if mismatch:
            raise ExtractError(f"{cache}: {mismatch}")
        check_prompt_lengths(loaded, names, info.prompt_template)
        writer = CacheWriter(cache, dataclasses.replace(info, model=loaded.identity))
        texts = [class_prompt(name, writer.info.prompt_template) for name in names]
        return writer.add_prompts(list(names), texts, encode_texts(loaded, texts))
    except CacheError as err:
        raise ExtractError(str(err)) from None
