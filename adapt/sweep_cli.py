"""`t3al-sweep CACHE_DIR --table table5`: every row of a paper table from one cache, as one table."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Iterable

import click

from t3al.cache import T3alError, terminated_cleanly
from t3al.evaluate.detection import describe_tious
from t3al.evaluate.report import format_table

from .config import AdaptConfig
from .engine.spec import build_spec, config_hash
from .engine.sweep import load_sweep, sweep_names, write_tables
from .options import adapt_with_progress, default_root, report_notes, report_runs, run_options, setting_options


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--table", "table", required=True,
              help=f"Shipped sweep ({', '.join(sweep_names())}) or the path of your own sweep TOML file.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder; default runs/<cache>/<split>/sweep-<table>_<hash of every row's configuration>.")
@click.option("--curves/--no-curves", default=True, show_default=True,
              help="Save every video's similarity curve per row (for plots and the HTML report).")
@run_options
@terminated_cleanly("t3al-sweep")  # kill or Ctrl-C: the claimed output folders go, exit 143 or 130
def main(cache: Path, table: str, setting: str, indices: tuple[int, ...], manifest_path: Path | None,
         preset: str | None, config_file: Path | None, seed: int, jobs: int | None, scheduler: str | None,
         device: str | None, overwrite: bool, out: Path | None, curves: bool, round_ap: bool, tiou_set: str | None,
         allow_failures: bool,
         progress: bool, **options: Any) -> None:
    """Run every row (configuration) of a sweep on the splits of a setting and tabulate them.

    A sweep is a TOML file of rows, each a name and the settings it changes. Settings resolve
    as: preset, --config file, the options below (all rows), then the row's own settings. Each
    video is read from the cache once for all splits and rows; rows that differ only in proposal
    settings, and splits giving a video the same pseudo-label, share one adaptation. Writes
    OUT/<row>/results.json (with the row's full config, the cache identity and the code version),
    each row's detections and curves, and the table as OUT/table.md and OUT/table.csv (mAP per
    tIoU and Avg, mean ± std over splits). The default OUT carries a hash of every row's resolved
    configuration, so a sweep with other settings never lands in the same folder; a row folder
    holding another configuration is refused unless --overwrite.

    Example: t3al-sweep cache/ --table table5 --split 75_25
    """
    try:
        sweep = load_sweep(table)
        spec = build_spec(cache, setting, indices=indices, manifest=manifest_path, preset=preset or sweep.preset,
                          config_file=config_file, options=setting_options(options), rows=sweep.rows,
                          rows_source=f"sweep {sweep.name}, row", seed=seed, jobs=jobs, round_ap=round_ap,
                          tiou_set=tiou_set, scheduler=scheduler, device=device)
        out = out or default_root(spec) / f"sweep-{sweep.name}_{sweep_hash(spec.configs.values(), seed)}"
        folders = {name: out / name for name in spec.configs}
        runs = adapt_with_progress(spec, folders, "video-split-row", f"{sweep.name} {spec.setting}", progress,
                                   curves=curves, overwrite=overwrite)
        documents = {name: result.document for name, result in runs.items()}
        paths = write_tables(documents, out)
    except T3alError as err:  # every error of the project: its message, one line
        raise click.ClickException(str(err)) from None
    problems = report_runs(runs, folders)
    click.echo(sweep.description)
    click.echo(format_table(documents))
    click.echo(describe_tious(spec.tious))
    report_notes(spec)
    click.echo(f"tables: {paths['markdown']}, {paths['csv']}; per-row results: {out}/<row>/results.json")
    if problems and not allow_failures:
        click.echo(f"{len(problems)} video-row(s) failed; rerun with --allow-failures to accept", err=True)
        sys.exit(1)


def sweep_hash(configs: Iterable[AdaptConfig], seed: int) -> str:
    """Six hex digits identifying every row's resolved configuration together."""
    return hashlib.sha256("".join(config_hash(c, seed) for c in configs).encode()).hexdigest()[:6]
