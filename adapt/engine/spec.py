"""One stage-two run, resolved and validated once: cache, manifest, setting, splits, thresholds, configs.

``t3al-adapt``, ``t3al-sweep`` and the benchmarks build a ``RunSpec`` with ``build_spec``,
``t3al-localize`` with ``vocabulary.build_vocabulary_spec``; the pipeline and the engine only read
it. Its names identify each configuration (``run_name``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from t3al.cache import CacheError, CacheReader
from t3al.evaluate.splits import manifest_tious
from t3al.manifests import TIOU_SETS, EvaluationSet, Manifest, ManifestError, dataset_rules, setting_name

from ..config import AdaptConfig, ConfigError, make_config
from .request import Execution, Instances, Request, Task

MAX_NAMED_CHANGES = 4  # settings spelled out in a run name; the hash tells the rest apart


def default_jobs() -> int:
    """The cores this process may use (the default of --jobs)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class RunSpec:
    """Everything a stage-two run reads, resolved once: the cache, the configs by name (a row's
    name, or the run name), the tasks, the seed and where the work runs; for a run evaluated with
    the zero-shot protocol its manifest, setting, chosen splits (each one's evaluation set, made
    once), tIoU thresholds and AP rounding, for a vocabulary run (``manifest`` None) none of these."""

    reader: CacheReader
    preset: str
    configs: dict[str, AdaptConfig]
    tasks: tuple[Task, ...]
    seed: int = 0
    execution: Execution = Execution()
    manifest: Manifest | None = None
    setting: str | None = None
    indices: tuple[int, ...] = ()
    tious: tuple[float, ...] = ()
    round_ap: bool = False
    evaluations: Mapping[int, EvaluationSet] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        return self.reader.root

    @property
    def name(self) -> str:
        """The first config's name: a run of one config is named by it (method, changed settings, hash)."""
        return next(iter(self.configs))

    @property
    def config(self) -> AdaptConfig:
        return self.configs[self.name]

    @property
    def classes(self) -> tuple[str, ...]:
        """A vocabulary run's class vocabulary (every task's)."""
        return self.tasks[0].classes

    @property
    def videos(self) -> tuple[str, ...]:
        """The videos of the tasks, each once, in order."""
        return tuple(dict.fromkeys(task.video for task in self.tasks))

    def evaluation(self, index: int) -> EvaluationSet:
        """What split ``index`` evaluates (unseen classes, their videos and ground truth)."""
        return self.evaluations[index]

    def request(self) -> Request:
        """What the engine runs: every task with every config."""
        return Request(self.reader, self.tasks, self.configs, self.seed, self.execution)

    def video_splits(self) -> int:
        """Tasks times configs (the progress bar's total)."""
        return len(self.configs) * len(self.tasks)


def load_manifest(reader: CacheReader, path: str | os.PathLike | None) -> Manifest:
    """The manifest given on the command line, else the copy recorded in the cache."""
    source = path or reader.manifest_path
    if source is None:
        raise CacheError(f"{reader.root}: the cache records no manifest; pass --manifest FILE")
    return Manifest.load(source)


def split_indices(manifest: Manifest, setting: str, indices: Sequence[int]) -> tuple[int, ...]:
    """The chosen split indices (default: all) of a setting the manifest defines, checked."""
    if setting not in manifest.splits:
        raise ManifestError(f"--split {setting}: the manifest of {manifest.dataset} has no such setting "
                            f"(has: {', '.join(manifest.splits) or 'none'})")
    count = len(manifest.splits[setting])
    wrong = [i for i in indices if not 0 <= i < count]
    if wrong:
        raise ManifestError(f"--split-index {wrong[0]}: setting {setting} has splits 0..{count - 1}")
    return tuple(dict.fromkeys(indices)) or tuple(range(count))


def check_device(name: str | None, here: bool = True) -> str | None:
    """``name`` when stage two can adapt there (None: the per-video path), else a ConfigError;
    CUDA is looked for only ``here`` (not when a cluster's workers will run the work)."""
    if name is None:
        return None
    import torch  # here, not at the top: the command-line's --help and errors start without torch
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N", "device") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: stage two runs on cpu or cuda", "device")
    if here and device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; leave --device out to adapt on the CPU",
                          "device")
    return name


def build_spec(cache: str | os.PathLike, setting: str = "75_25", *, indices: Sequence[int] = (),
               manifest: str | os.PathLike | None = None, preset: str | None = None,
               config_file: str | os.PathLike | None = None, options: Mapping[str, Any] | None = None,
               rows: Mapping[str, Mapping[str, Any]] | None = None, rows_source: str = "row", seed: int = 0,
               jobs: int | None = None, round_ap: bool = False, tiou_set: str | None = None,
               scheduler: str | None = None, device: str | None = None) -> RunSpec:
    """Open the cache and manifest, check the setting and splits, resolve every config.

    Settings resolve as: ``preset`` (default: the manifest's dataset family's), the named method's
    settings for that preset, ``config_file``, ``options`` (the command line), then each of ``rows``
    (name -> settings; one config per row). Without ``rows`` the one config is named by ``run_name``.
    The tables average over the named ``tiou_set`` (default: the manifest's thresholds). ``device``
    is checked here, CUDA's presence only without a ``scheduler`` (then the workers run the work).
    """
    reader = CacheReader(cache)
    loaded = load_manifest(reader, manifest)
    key = setting_name(setting)
    chosen = split_indices(loaded, key, indices)
    preset = preset or dataset_rules(loaded.dataset).preset
    tious = run_tious(loaded, tiou_set)
    configs = resolve_configs(preset, config_file, options, rows, rows_source, seed)
    execution = check_execution(jobs, scheduler, device)
    evaluations = {index: loaded.evaluation_set(key, index) for index in chosen}
    for evaluation in evaluations.values():
        reader.head().prompt_index(evaluation.classes)
    tasks = split_tasks(loaded, evaluations, any(c.oracle for c in configs.values()))
    return RunSpec(reader, preset, configs, tasks, seed, execution, loaded, key, chosen, tious, round_ap, evaluations)


def split_tasks(manifest: Manifest, evaluations: Mapping[int, EvaluationSet], oracles: bool) -> tuple[Task, ...]:
    """Each split's videos in the manifest's order, with the split's classes (and, for the
    oracles, each video's true instances, classes by their position in the split's)."""
    tasks = []
    for index, evaluation in evaluations.items():
        truths = _truths(evaluation) if oracles else {}
        members = set(evaluation.videos)
        tasks += [Task(index, v, tuple(evaluation.classes), truths.get(v, ())) for v in manifest.videos if v in members]
    return tuple(tasks)


def _truths(evaluation: EvaluationSet) -> dict[str, Instances]:
    position = {name: i for i, name in enumerate(evaluation.classes)}
    truths: dict[str, list] = {}
    for a in evaluation.annotations:
        truths.setdefault(a["video"], []).append((float(a["start"]), float(a["end"]), position[a["label"]]))
    return {video: tuple(instances) for video, instances in truths.items()}


def resolve_configs(preset: str, config_file: str | os.PathLike | None = None,
                    options: Mapping[str, Any] | None = None, rows: Mapping[str, Mapping[str, Any]] | None = None,
                    rows_source: str = "row", seed: int = 0) -> dict[str, AdaptConfig]:
    """The configs of a run, named: the preset, the config file, the command line, then each row
    (without rows, one config named by ``run_name``)."""
    layers = [("command line", options or {})]
    if rows is None:
        config = make_config(preset, config_file, layers)
        return {run_name(config, preset, seed): config}
    return {name: make_config(preset, config_file, [*layers, (f"{rows_source} {name!r}", settings)])
            for name, settings in rows.items()}


def check_execution(jobs: int | None, scheduler: str | None, device: str | None) -> Execution:
    """Where a run's work goes, checked: ``jobs`` processes (default: the cores), a Dask
    ``scheduler`` (blank: none) and a ``device`` (CUDA looked for only without a scheduler)."""
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}", "jobs")
    scheduler = (scheduler or "").strip() or None
    return Execution(jobs, scheduler, check_device(device, here=scheduler is None))


def run_tious(manifest: Manifest, tiou_set: str | None) -> tuple[float, ...]:
    """The thresholds of the named set, else the manifest's."""
    if tiou_set is None:
        return manifest_tious(manifest)
    if tiou_set not in TIOU_SETS:
        raise ConfigError(f"--tiou {tiou_set}: no such tIoU set (choose one of {', '.join(TIOU_SETS)})", "tiou")
    return TIOU_SETS[tiou_set]


def shown_value(value: Any) -> str:
    """A setting's value as run names and --help show it: on/off, a+b, mean, 1e-05."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return "+".join(value) or "none"
    return "mean" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def config_changes(config: AdaptConfig, preset: str) -> list[str]:
    """The settings in which ``config`` differs from its method's settings over ``preset``, as
    ``name=value`` (method left out); a setting the base does not record (the online protocol's)
    against its default."""
    base = make_config(preset, method=config.method).to_dict()
    return [f"{name}={shown_value(value)}" for name, value in config.to_dict().items()
            if name != "method" and value != base.get(name, getattr(AdaptConfig, name))]


def config_hash(config: AdaptConfig, seed: int = 0) -> str:
    """Six hex digits of the full resolved config and the seed: equal only for the same configuration."""
    text = json.dumps({"config": config.to_dict(), "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def run_name(config: AdaptConfig, preset: str, seed: int = 0) -> str:
    """The name of a configuration, as folder and row name: method, what differs from the preset
    with the method's settings, the seed when not 0, and the config hash, e.g.
    ``t3al_steps=0_suppression=off_1f0c2a``."""
    changes = config_changes(config, preset) + ([f"seed={seed}"] if seed else [])
    if len(changes) > MAX_NAMED_CHANGES:
        changes = changes[:MAX_NAMED_CHANGES] + [f"{len(changes) - MAX_NAMED_CHANGES}more"]
    return "_".join([config.method, *changes, config_hash(config, seed)])
