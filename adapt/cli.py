"""`t3al-adapt CACHE_DIR --split 75_25`: stage two from the cache, evaluated with the zero-shot protocol."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from t3al.cache import T3alError, terminated_cleanly
from t3al.evaluate.detection import describe_tious
from t3al.evaluate.report import format_table

from .engine.spec import build_spec
from .options import adapt_with_progress, default_root, report_notes, report_runs, run_options, setting_options


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder; default runs/<cache>/<split>/<run name> (the name printed with the table).")
@run_options
@terminated_cleanly("t3al-adapt")  # kill or Ctrl-C: the claimed output folders go, exit 143 or 130
def main(cache: Path, setting: str, indices: tuple[int, ...], manifest_path: Path | None, preset: str | None,
         config_file: Path | None, seed: int, jobs: int | None, scheduler: str | None, device: str | None,
         overwrite: bool, out: Path | None, round_ap: bool, tiou_set: str | None, allow_failures: bool,
         progress: bool, **options: Any) -> None:
    """Localize actions from a t3al cache and evaluate them with the zero-shot protocol.

    Runs the ten class splits of the setting (or --split-index), writes each split's detections
    (ActivityNet JSON and CSV) and per-video curves, then results.json (mAP per tIoU, mean and std
    over splits) and prints the table. The run is named after the method, the settings that differ
    from the preset and a hash of the full configuration; that name is the default folder and the
    table's row. Every setting of the method (docs/method.md) has an option below, with its default
    under each preset in brackets.

    Example: t3al-adapt cache/ --split 75_25
    """
    try:
        spec = build_spec(cache, setting, indices=indices, manifest=manifest_path, preset=preset,
                          config_file=config_file, options=setting_options(options), seed=seed, jobs=jobs,
                          round_ap=round_ap, tiou_set=tiou_set, scheduler=scheduler, device=device)
        name = next(iter(spec.configs))
        folders = {name: out or default_root(spec) / name}
        runs = adapt_with_progress(spec, folders, "video-split", spec.setting, progress, overwrite=overwrite)
    except T3alError as err:  # every error of the project: its message, one line
        raise click.ClickException(str(err)) from None
    problems = report_runs(runs, folders)
    click.echo(format_table({name: runs[name].document}))
    click.echo(describe_tious(spec.tious))
    report_notes(spec)
    click.echo(f"results: {folders[name] / 'results.json'}")
    if problems and not allow_failures:
        failed = {p.video_id for result in runs.values() for p in result.problems}
        click.echo(f"{len(failed)} video(s) failed; rerun with --allow-failures to accept", err=True)
        sys.exit(1)
