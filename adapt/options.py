"""The options and reports every stage-two command shares (t3al-adapt, t3al-sweep, t3al-localize), so
that no command module imports another."""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from t3al.manifests import TIOU_SETS

from .config import DEFAULT_PRESET, GROUPS, SETTINGS, UNPUBLISHED, AdaptConfig, make_config, preset_names
from .engine.cluster import SCHEDULER_ENV
from .engine.spec import RunSpec, default_jobs, shown_value

if typing.TYPE_CHECKING:
    from .engine.pipeline import ConfigRun


class ThresholdType(click.ParamType):
    """A proposal threshold: a number, or 'mean' (frames above the curve's mean)."""

    name = "NUMBER|mean"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "mean" or isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'mean'", param, ctx)


def preset_defaults(name: str) -> str:
    """The effective default of setting ``name`` under each preset: '[default: thumos14 60,
    activitynet 15]', or '[default: 100]' when every preset agrees."""
    values = {preset: shown_value(getattr(make_config(preset), name)) if name != "presence_threshold" else "off"
              for preset in preset_names()}
    if len(set(values.values())) == 1:
        return f"[default: {next(iter(values.values()))}]"
    order = sorted(values, key=lambda preset: preset != DEFAULT_PRESET)
    return "[default: " + ", ".join(f"{preset} {values[preset]}" for preset in order) + "]"


def config_options(command):
    """One command-line option per declared setting (``SETTINGS``), grouped as the declarations
    group them, unset (None) unless given; the help shows the setting's effective default under
    each preset."""
    hints = typing.get_type_hints(AdaptConfig)
    order = sorted(SETTINGS, key=lambda name: GROUPS.index(SETTINGS[name].group))
    for name in reversed(order):
        flag, kind, declared = name.replace("_", "-"), hints[name], SETTINGS[name]
        text = f"[{declared.group}] {declared.help} {preset_defaults(name)}"
        if kind is bool:
            option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=text)
        elif typing.get_origin(kind) is tuple:
            option = click.option(f"--{flag}", name, type=click.Choice(declared.choices), multiple=True, help=text)
        elif declared.choices:
            option = click.option(f"--{flag}", name, type=click.Choice(declared.choices), help=text)
        elif name == "threshold":
            option = click.option("--threshold", "threshold", type=ThresholdType(), help=text)
        elif kind == (float | None):
            option = click.option(f"--{flag}", name, type=float, default=None, help=text)
        else:
            option = click.option(f"--{flag}", name, type=kind, default=None, help=text)
        command = option(command)
    return command


def setting_options(options: dict[str, Any]) -> dict[str, Any]:
    """The config settings given on the command line (an empty repeated option is unset)."""
    return {k: (v or None) if isinstance(v, tuple) else v for k, v in options.items()}


def default_root(spec: RunSpec) -> Path:
    """Where runs of a cache and setting go by default: runs/<cache>/<setting>."""
    return Path("runs") / spec.cache.resolve().name / spec.setting


def execution_options(command):
    """The options of every stage-two run: settings (preset, file, one option per setting), seed,
    where the work runs (processes, Dask, device), the output folder rule, failures, progress."""
    options = [
        click.option("--preset", type=click.Choice(preset_names()),
                     help="Settings preset; default: activitynet for ActivityNet manifests, else thumos14."),
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="TOML file of settings, applied over the preset (field names as the options below)."),
        click.option("--seed", default=0, show_default=True, help="Random seed (per video: seed and video id)."),
        click.option("--jobs", "-j", type=int, default=None,
                     help=f"Worker processes across videos (joblib); default: this machine's cores ({default_jobs()})."),
        click.option("--scheduler", envvar=SCHEDULER_ENV, metavar="ADDRESS",
                     help=f"Dask scheduler (e.g. tcp://host:8786; default ${SCHEDULER_ENV}): per-video-reset work "
                          "runs on its workers, which read CACHE by the same path; --jobs is then ignored."),
        click.option("--device", metavar="DEVICE",
                     help="Adapt many videos at once on this device (cuda, cuda:1, cpu): on the CPU the same "
                          "detections as video by video, on a GPU the same to float rounding (docs/performance.md); "
                          "default: video by video on the CPU. Stream configs stay sequential."),
        click.option("--overwrite", is_flag=True,
                     help="Replace an output folder that holds another configuration's results "
                          "(a rerun of the same configuration replaces its own without it)."),
        click.option("--allow-failures", is_flag=True, help="Exit 0 even when some videos could not be processed."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar."),
    ]
    command = config_options(command)
    for option in reversed(options):
        command = option(command)
    return command


def adapt_with_progress(spec: RunSpec, folders: dict[str, Path], unit: str, desc: str, progress: bool,
                        **kwargs: Any) -> dict[str, ConfigRun]:
    """Run stage two with a progress bar over video-splits. Its modules (and torch) are imported here,
    once the settings are valid, so that --help and the one-line errors start in a fraction of a second."""
    from .engine.output import OutputError
    from .engine.pipeline import run
    with tqdm(total=spec.video_splits(), unit=unit, disable=not progress, desc=desc) as bar:
        try:
            return run(spec, folders, on_video=bar.update, **kwargs)
        except OutputError as err:
            raise click.ClickException(str(err)) from None


def run_options(command):
    """The options every evaluated stage-two command shares: which splits, where from, how to run and report."""
    options = [
        click.argument("cache", type=click.Path(path_type=Path)),
        click.option("--split", "setting", default="75_25", show_default=True,
                     help="Zero-shot setting: 75_25 or 50_50 (seen:unseen classes)."),
        click.option("--split-index", "indices", type=click.IntRange(min=0), multiple=True,
                     help="Run only this split (repeat); default: all ten."),
        click.option("--manifest", "manifest_path", type=click.Path(path_type=Path),
                     help="Dataset manifest (ground truth, splits); default: the one recorded in the cache."),
        click.option("--round", "round_ap", is_flag=True, help="Round each class AP to 0.1 like the public scripts."),
        click.option("--tiou", "tiou_set", type=click.Choice(list(TIOU_SETS)),
                     help="Named tIoU set of the table; default: the manifest's thresholds. activitynet-public: "
                          "0.5, 0.75, 0.95 only, the public T3AL script's ActivityNet Avg."),
    ]
    command = execution_options(command)
    for option in reversed(options):
        command = option(command)
    return command


def report_runs(runs: dict[str, ConfigRun], folders: dict[str, Path]) -> list[str]:
    """Print warnings, failures and replaced folders; the failures, as 'name: problem', each once
    (a video that fails fails in every split that holds it)."""
    label = (lambda name: f"{name}: ") if len(runs) > 1 else (lambda name: "")
    problems = list(dict.fromkeys(f"{label(name)}{p}" for name, result in runs.items() for p in result.problems))
    for name, result in runs.items():
        for warning in result.warnings:
            click.echo(f"warning: {label(name)}{warning}", err=True)
        if result.replaced:
            click.echo(f"note: {folders[name]}: {result.replaced}", err=True)
    for problem in problems:
        click.echo(f"failed: {problem}", err=True)
    return problems


def report_notes(spec: RunSpec) -> None:
    """Print what is unpublished about a config's method (AdaZAD's optimiser settings), per row, and
    which cached videos stage one kept despite decode warnings."""
    label = (lambda name: f"{name}: ") if len(spec.configs) > 1 else (lambda name: "")
    for name, config in spec.configs.items():
        if config.method in UNPUBLISHED:
            click.echo(f"note: {label(name)}{UNPUBLISHED[config.method]}")
    kept = [entry["video_id"] for entry in spec.reader.kept_with_warnings()]
    if kept:
        shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        click.echo(f"note: {len(kept)} cached video(s) may be partial (stage one kept them despite decode "
                   f"warnings, --on-decode-error keep): {shown}; reasons in {spec.cache / 'failures.jsonl'}")
