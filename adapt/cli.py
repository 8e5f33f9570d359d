"""`t3al-adapt CACHE_DIR --split 75_25`: stage two from the cache, evaluated with the zero-shot protocol."""
from __future__ import annotations

import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from t3al.cache import CacheError, CacheReader
from t3al.evaluate import EvaluationError
from t3al.evaluate.report import format_table
from t3al.manifests import ManifestError, setting_name

from .batched import check_device
from .cluster import SCHEDULER_ENV, ClusterError, dask_backend
from .config import CHOICES, AdaptConfig, ConfigError, make_config, preset_names
from .pipeline import load_manifest, run_setting

HELP = {
    "method": "t3al, or naive (the per-frame VLM baseline of the paper's Sec. 5.1).",
    "protocol": "reset: each video starts from the model (independent, parallel); "
                "stream: the public code's one optimiser over the videos in order.",
    "implementation": "fast (re-associated products, default) or direct (full V @ Pv every step).",
    "steps": "Adaptation steps T (0 with --no-suppression gives T3AL_0).",
    "k": "Positive and negative samples per step (K).",
    "pool": "Candidates per side = pool * K.",
    "radius": "Sample index perturbation radius r; 0 = none (exactly reproducible).",
    "remove_background": "Subtract the mean frame embedding before scoring frames.",
    "window": "Moving-average window of the similarity curve; 0 or 1 = none.",
    "normalize": "Min-max normalise the proposal curve.",
    "threshold": "Proposal threshold on the curve; 'mean' keeps frames above its mean.",
    "stride": "Largest gap (frames) inside one proposal.",
    "suppression": "Caption-guided suppression of proposals.",
    "beta": "Caption cosine threshold of the suppression.",
    "lr": "Learning rate of Pt and s.",
    "visual_lr_scale": "Pv learning rate = lr * this.",
    "weight_decay": "Adam's L2 weight decay.",
    "smoothing": "Label smoothing of the byol targets.",
    "separation": "Separation loss on the scores: byol, bce or none.",
    "representation": "Representation loss: text (public code), pairwise (paper Eq. 7) or none.",
    "adapt": "Parameter to adapt (repeat): visual, text, scale.",
    "patience": "Early stopping after this many steps without a lower loss (paper: 5); 0 = fixed steps.",
    "label_rule": "pseudo: label = video pseudo-label (public code); argmax: per-region argmax (paper).",
    "naive_threshold": "Frame probability threshold of the naive baseline.",
    "oracle": "Ground-truth oracle (repeat): class, count, selection (paper Fig. 4).",
}


def _threshold(value: str | None) -> Any:
    if value is None:
        return None
    if value == "mean":
        return "mean"
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'mean'") from None


def config_options(command):
    """One command-line option per AdaptConfig field, unset (None) unless given."""
    hints = typing.get_type_hints(AdaptConfig)
    for f in reversed(fields(AdaptConfig)):
        flag = f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            option = click.option(f"--{flag}/--no-{flag}", f.name, default=None, help=HELP[f.name])
        elif typing.get_origin(kind) is tuple:
            option = click.option(f"--{flag}", f.name, type=click.Choice(CHOICES[f.name]), multiple=True,
                                  help=HELP[f.name])
        elif f.name in CHOICES:
            option = click.option(f"--{flag}", f.name, type=click.Choice(CHOICES[f.name]), help=HELP[f.name])
        elif f.name == "threshold":
            option = click.option("--threshold", "threshold", help=HELP[f.name])
        else:
            option = click.option(f"--{flag}", f.name, type=kind, default=None, help=HELP[f.name])
        command = option(command)
    return command


def resolve_config(preset: str | None, config_file: Path | None, dataset: str, options: dict) -> AdaptConfig:
    """Preset (default: from the manifest's dataset), then config file, then command-line options."""
    overrides = {k: (v or None) if isinstance(v, tuple) else v for k, v in options.items()}
    threshold = _threshold(overrides.pop("threshold", None))
    config = make_config(preset or ("activitynet" if dataset.lower().startswith("activitynet") else "thumos14"),
                         config_file, **overrides)
    if threshold is not None:
        config = config.replace(threshold=None if threshold == "mean" else threshold)
    return config


def default_out(cache: Path, setting: str, config: AdaptConfig) -> Path:
    name = "naive" if config.method == "naive" else f"t3al-T{config.steps}-{config.protocol}"
    return Path("runs") / cache.resolve().name / setting_name(setting) / name


def run_options(command):
    """The options every stage-two command shares: which splits, where from, how to run and report."""
    options = [
        click.argument("cache", type=click.Path(path_type=Path)),
        click.option("--split", "setting", default="75_25", show_default=True,
                     help="Zero-shot setting: 75_25 or 50_50 (seen:unseen classes)."),
        click.option("--split-index", "indices", type=int, multiple=True,
                     help="Run only this split (repeat); default: all ten."),
        click.option("--manifest", "manifest_path", type=click.Path(path_type=Path),
                     help="Dataset manifest (ground truth, splits); default: the one recorded in the cache."),
        click.option("--preset", type=click.Choice(preset_names()),
                     help="Settings preset; default: activitynet for ActivityNet manifests, else thumos14."),
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="TOML file of settings, applied over the preset (field names as the options below)."),
        click.option("--seed", default=0, show_default=True, help="Random seed (per video: seed and video id)."),
        click.option("--jobs", "-j", default=1, show_default=True, help="Worker processes across videos (joblib)."),
        click.option("--scheduler", envvar=SCHEDULER_ENV, metavar="ADDRESS",
                     help=f"Dask scheduler (e.g. tcp://host:8786; default ${SCHEDULER_ENV}): per-video-reset work "
                          "runs on its workers, which read CACHE by the same path; --jobs is then ignored."),
        click.option("--device", metavar="DEVICE",
                     help="Adapt many videos at once on this device (cuda, cuda:1, cpu): same detections to float "
                          "rounding; default: video by video on the CPU. Stream configs stay sequential."),
        click.option("--round", "round_ap", is_flag=True, help="Round each class AP to 0.1 like the public scripts."),
        click.option("--allow-failures", is_flag=True, help="Exit 0 even when some videos could not be processed."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar."),
    ]
    command = config_options(command)
    for option in reversed(options):
        command = option(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder; default runs/<cache>/<split>/<method>.")
@run_options
def main(cache: Path, setting: str, indices: tuple[int, ...], manifest_path: Path | None, preset: str | None,
         config_file: Path | None, seed: int, jobs: int, scheduler: str | None, device: str | None, out: Path | None,
         round_ap: bool, allow_failures: bool, progress: bool, **options: Any) -> None:
    """Localize actions from a t3al cache and evaluate them with the zero-shot protocol.

    Runs the ten class splits of the setting (or --split-index), writes each split's detections
    (ActivityNet JSON and CSV) and per-video curves, then results.json (mAP per tIoU, mean and std
    over splits) and prints the table. Every setting of METHOD.md has an option below.

    Example: t3al-adapt cache/ --split 75_25 --jobs 2
    """
    try:
        reader = CacheReader(cache)
        manifest = load_manifest(reader, manifest_path)
        config = resolve_config(preset, config_file, manifest.dataset, options)
        out = out or default_out(cache, setting, config)
        key = setting_name(setting)
        chosen = list(indices) or list(range(len(manifest.splits.get(key, []))))
        total = sum(len(manifest.evaluation_set(key, i).videos) for i in chosen)
        with tqdm(total=total, unit="video", disable=not progress, desc=f"{key}") as bar, dask_backend(scheduler):
            run = run_setting(cache, key, config, manifest_path, chosen, seed, jobs, out, round_ap, bar.update,
                              check_device(device, not scheduler))
    except (CacheError, ClusterError, ConfigError, ManifestError, EvaluationError) as err:
        raise click.ClickException(str(err)) from None
    for warning in run.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in run.problems:
        click.echo(f"failed: {problem}", err=True)
    name = "naive VLM" if config.method == "naive" else f"T3AL (T={config.steps}, {config.protocol})"
    click.echo(format_table({name: run.document}))
    click.echo(f"results: {out / 'results.json'}")
    if run.problems and not allow_failures:
        click.echo(f"{len(run.problems)} video(s) failed; rerun with --allow-failures to accept", err=True)
        sys.exit(1)
