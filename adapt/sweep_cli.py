"""`t3al-sweep CACHE_DIR --table table5`: every row of a paper table from one cache, as one table."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from t3al.cache import CacheError, CacheReader
from t3al.evaluate import EvaluationError
from t3al.evaluate.report import format_table
from t3al.manifests import ManifestError, setting_name

from .batched import check_device
from .cli import resolve_config, run_options
from .cluster import ClusterError, dask_backend
from .config import ConfigError
from .pipeline import load_manifest, run_settings
from .sweep import load_sweep, resolve_rows, sweep_names, write_tables


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--table", "table", required=True,
              help=f"Shipped sweep ({', '.join(sweep_names())}) or the path of your own sweep TOML file.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder; default runs/<cache>/<split>/sweep-<table>.")
@click.option("--curves/--no-curves", default=True, show_default=True,
              help="Save every video's similarity curve per row (for plots and the HTML report).")
@run_options
def main(cache: Path, table: str, setting: str, indices: tuple[int, ...], manifest_path: Path | None,
         preset: str | None, config_file: Path | None, seed: int, jobs: int, scheduler: str | None,
         device: str | None, out: Path | None, curves: bool,
         round_ap: bool, allow_failures: bool, progress: bool, **options: Any) -> None:
    """Run every row (configuration) of a sweep on the splits of a setting and tabulate them.

    A sweep is a TOML file of rows, each a name and the settings it changes. Settings resolve
    as: preset, --config file, the options below (all rows), then the row's own settings. Each
    video is read from the cache once for all splits and rows; rows that differ only in proposal
    settings, and splits giving a video the same pseudo-label, share one adaptation. Writes OUT/<row>/results.json (with the row's full config,
    the cache identity and the code version), each row's detections and curves, and the table
    as OUT/table.md and OUT/table.csv (mAP per tIoU and Avg, mean ± std over splits).

    Example: t3al-sweep cache/ --table table5 --split 75_25 --jobs 2
    """
    try:
        reader = CacheReader(cache)
        manifest = load_manifest(reader, manifest_path)
        sweep = load_sweep(table)
        configs = resolve_rows(
            sweep, lambda values: resolve_config(preset or sweep.preset, config_file, manifest.dataset, values),
            options)
        key = setting_name(setting)
        out = out or Path("runs") / cache.resolve().name / key / f"sweep-{sweep.name}"
        chosen = list(indices) or list(range(len(manifest.splits.get(key, []))))
        total = len(configs) * sum(len(manifest.evaluation_set(key, i).videos) for i in chosen)
        with tqdm(total=total, unit="video-row", disable=not progress, desc=f"{sweep.name} {key}") as bar, \
                dask_backend(scheduler):
            runs = run_settings(cache, key, configs, manifest_path, chosen, seed, jobs, out, round_ap, bar.update,
                                curves, check_device(device, not scheduler))
        documents = {name: run.document for name, run in runs.items()}
        paths = write_tables(documents, out)
    except (CacheError, ClusterError, ConfigError, ManifestError, EvaluationError) as err:
        raise click.ClickException(str(err)) from None
    problems = [(name, p) for name, run in runs.items() for p in run.problems]
    for name, run in runs.items():
        for warning in run.warnings:
            click.echo(f"warning: {name}: {warning}", err=True)
    for name, problem in problems:
        click.echo(f"failed: {name}: {problem}", err=True)
    click.echo(sweep.description)
    click.echo(format_table(documents))
    click.echo(f"tables: {paths['markdown']}, {paths['csv']}; per-row results: {out}/<row>/results.json")
    if problems and not allow_failures:
        click.echo(f"{len(problems)} video-row(s) failed; rerun with --allow-failures to accept", err=True)
        sys.exit(1)
