"""t3al-evaluate: detection mAP of one file or of a whole zero-shot setting, tables and HTML reports."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from t3al.cache import T3alError, write_atomically, write_problem
from t3al.manifests import TIOU_SETS, Manifest, read_class_list, read_text

from .detection import THUMOS14_TIOUS, MAPResult, describe_tious, evaluate_detections
from .presence import presence_quality, read_presences, video_flags
from .report import FORMATS, format_table
from .splits import detections_path, evaluate_setting, manifest_tious
from .results import Detections
from .tables import EvaluationError, GroundTruth

_EXISTING = click.Path(exists=True, path_type=Path)


def _parse_tious(values: tuple[str, ...]) -> tuple[float, ...] | None:
    """``--tiou 0.3,0.5`` or repeated ``--tiou 0.3 --tiou 0.5`` or a preset name; None when absent."""
    if not values:
        return None
    tious: list[float] = []
    for value in values:
        if value.lower() in TIOU_SETS:
            tious += TIOU_SETS[value.lower()]
            continue
        try:
            tious += [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r}: use numbers like 0.3,0.5 or a set: {', '.join(TIOU_SETS)}") from None
    if not all(0 < t <= 1 for t in tious):
        raise click.BadParameter("thresholds must lie in (0, 1]")
    return tuple(tious)


_tiou_option = click.option("--tiou", "tiou_values", multiple=True, metavar="LIST",
                            help="tIoU thresholds: 0.3,0.4,0.5 (or repeat the option), or a set: 'thumos14' "
                                 "(0.3:0.1:0.7), 'activitynet' (0.5:0.05:0.95), 'activitynet-public' (0.5, "
                                 "0.75, 0.95: the public T3AL script's ActivityNet Avg). Default: the "
                                 "manifest's, else THUMOS14's.")
_round_option = click.option("--round", "round_ap", is_flag=True,
                             help="Round each class AP to 0.1 percent before averaging, like the public "
                                  "T3AL/FreeZAD scripts (for comparison with printed tables).")
_json_option = click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the results as JSON.")
_overwrite_option = click.option("--overwrite", is_flag=True,
                                 help="Replace an output file that holds other results (identical results are "
                                      "rewritten without it).")


class _DefaultGroup(click.Group):
    """A group whose first argument, when it is not a command name, goes to the ``score`` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["score", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Temporal detection mAP as the ActivityNet toolkit, under the zero-shot TAL protocol.

    \b
    One file (the 'score' command is the default):
      t3al-evaluate DETECTIONS --ground-truth GT [--classes LIST] [--tiou 0.3,0.5] [--round] [--json OUT]
    A whole setting from a manifest (mean and std over the ten splits):
      t3al-evaluate setting OUT_DIR --manifest manifests/thumos14.json --split 75_25 [--json OUT]
    A paper-style table of several results files, and an HTML report of a t3al-adapt output:
      t3al-evaluate table A/results.json B/results.json --format markdown
      t3al-evaluate report OUT_DIR --manifest manifests/thumos14.json --plots 8

    Figures are percent and unrounded unless --round. Detections on videos without ground truth of
    the evaluated classes are dropped and their number is printed; labels outside the class list,
    NaN scores, end < start or missing CSV columns are errors naming file and row.
    """


@main.command("score")
@click.argument("detections", type=_EXISTING)
@click.option("--ground-truth", "-g", type=_EXISTING, required=True,
              help="Ground truth: CSV video-id,t-start,t-end,label, a t3al manifest or an ActivityNet JSON.")
@click.option("--classes", "class_file", type=_EXISTING,
              help="File with the evaluated classes, one per line. Default: every label in the ground truth.")
@_tiou_option
@_round_option
@_json_option
@_overwrite_option
@click.option("--per-class", is_flag=True, help="Also print the AP of each class.")
@click.option("--open-set", is_flag=True,
              help="Count every video of the ground truth (a detection in a video without that action is a false "
                   "positive), and print how many videos without the classes got detections, how many with them "
                   "were found, and the presences' AP and ROC AUC over video-action pairs.")
@click.option("--presence", "presence_file", type=_EXISTING,
              help="With --open-set: the presences (presence.csv or a detection JSON); default: DETECTIONS' own "
                   "'presence' object, when it has one.")
def score(detections: Path, ground_truth: Path, class_file: Path | None, tiou_values: tuple[str, ...],
          round_ap: bool, json_out: Path | None, overwrite: bool, per_class: bool, open_set: bool,
          presence_file: Path | None) -> None:
    """mAP of DETECTIONS (CSV video-id,t-start,t-end,score,label or ActivityNet detection JSON)."""
    with _errors():
        if presence_file and not open_set:
            raise EvaluationError("--presence is read with --open-set")
        gt = GroundTruth.read(ground_truth)
        classes = read_class_list(class_file) if class_file else sorted(set(gt.label.tolist()))
        tious = _parse_tious(tiou_values) or _ground_truth_tious(ground_truth)
        found = Detections.read(detections)
        result = evaluate_detections(found, gt, classes, tious, round_ap=round_ap, open_set=open_set)
        document = result.to_dict()
        click.echo(format_table({detections.name: document}))
        _outside_notes(found, _durations(ground_truth))
        click.echo(describe_tious(tious) + ("; every video of the ground truth counted" if open_set else ""))
        if per_class:
            click.echo(format_table({c: {"tiou": result.tiou, "map": ap, "avg": float(ap.mean())}
                                     for c, ap in result.per_class.items()}))
        _notes(result)
        if open_set:
            document["open_set"] = _open_set_figures(found, gt, classes, presence_file or _own_presences(detections))
        if json_out:
            _write_output(json_out, _json_text(document), overwrite)


@main.command("setting")
@click.argument("detections")
@click.option("--manifest", "-m", "manifest_path", type=_EXISTING, required=True,
              help="Manifest with ground truth and split lists.")
@click.option("--split", "setting", required=True, help="Setting: 75_25 or 50_50.")
@click.option("--split-index", "indices", type=click.IntRange(min=0), multiple=True,
              help="Only this split (repeat); default: all ten. The same option as t3al-adapt's.")
@_tiou_option
@_round_option
@_json_option
@_overwrite_option
def setting_command(detections: str, manifest_path: Path, setting: str, indices: tuple[int, ...],
                    tiou_values: tuple[str, ...], round_ap: bool, json_out: Path | None, overwrite: bool) -> None:
    """Every split of a setting: DETECTIONS is a pattern with {i} or a directory holding
    split_<i>/detections.json|csv (t3al-adapt's OUT) or <i>.csv|json. Prints per-split mAP and
    the mean ± sample std across splits; --json writes the results.json layout."""
    with _errors():
        manifest = Manifest.load(manifest_path)
        tious = _parse_tious(tiou_values) or manifest_tious(manifest)
        document = evaluate_setting(manifest, setting, lambda i: Detections.read(detections_path(detections, i)),
                                    tious, round_ap, indices or None)
        rows = {f"split {s['index']}": s for s in document["splits"]}
        rows["mean ± std"] = document
        click.echo(format_table(rows))
        click.echo(describe_tious(tious))
        dropped = sum(s["n_dropped"] for s in document["splits"])
        if dropped:
            click.echo(f"note: {dropped} detections on videos outside the splits' evaluation sets were dropped")
        if json_out:
            _write_output(json_out, _json_text(document), overwrite)


@main.command("table")
@click.argument("results", type=_EXISTING, nargs=-1, required=True)
@click.option("--name", "names", multiple=True, help="Row names, in order (default: each file's folder name).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="terminal", show_default=True)
@click.option("--columns", "column_values", multiple=True, metavar="LIST",
              help="Thresholds shown as columns, e.g. 0.5,0.75,0.95 (Avg is always over all).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the table to this file instead of printing it.")
@_overwrite_option
def table(results: tuple[Path, ...], names: tuple[str, ...], fmt: str, column_values: tuple[str, ...],
          output: Path | None, overwrite: bool) -> None:
    """Paper-style table (rows = methods, columns = mAP@tIoU and Avg) of results.json or --json files."""
    with _errors():
        if names and len(names) != len(results):
            raise EvaluationError(f"{len(names)} --name for {len(results)} results files")
        labels = names or [p.parent.name if p.name == "results.json" else p.stem for p in results]
        rows = {label: _read_results(path) for label, path in zip(labels, results)}
        text = format_table(rows, fmt, _parse_tious(column_values)).rstrip("\n")
        if output:
            _write_output(output, text + "\n", overwrite)
            click.echo(f"wrote {output}")
        else:
            click.echo(text)
            if fmt == "terminal":
                click.echo(describe_tious(next(iter(rows.values()))["tiou"]))


@main.command("report")
@click.argument("out_dir", type=_EXISTING)
@click.option("--manifest", "-m", "manifest_path", type=_EXISTING,
              help="Manifest for ground truth and durations; default: the one in the cache the run read "
                   "(its config.json names the cache).")
@click.option("--plots", "n_plots", type=click.IntRange(min=0), default=8, show_default=True,
              help="Videos plotted per split, spread over the ranking by per-video AP: 1 the median, "
                   "2 the best and worst, 3 best, median and worst, ... (needs a manifest; else the "
                   "first by name). Read from the saved curves; nothing is recomputed.")
@click.option("--plot-videos", "videos", metavar="LIST",
              help="Plot these videos instead (comma-separated ids), in each split that has them.")
@click.option("--html", "html_path", type=click.Path(path_type=Path),
              help="Report file (default OUT_DIR/report/index.html).")
@_overwrite_option
def report(out_dir: Path, manifest_path: Path | None, n_plots: int, videos: str | None,
           html_path: Path | None, overwrite: bool) -> None:
    """HTML report of a t3al-adapt output folder: the table, AP per class per split and per-video
    plots (similarity curve, ground-truth and predicted segments) read from OUT_DIR/split_<i>/curves.
    The report says which rule chose the plotted videos."""
    from .html import write_report

    with _errors():
        if manifest_path is None:
            manifest_path = run_manifest(out_dir)
            if manifest_path is not None:
                click.echo(f"manifest: {manifest_path} (the run's cache's; --manifest to choose another)")
        manifest = Manifest.load(manifest_path) if manifest_path else None
        chosen = [v.strip() for v in videos.split(",") if v.strip()] if videos else []
        path = write_report(out_dir, manifest, n_plots, html_path, chosen, overwrite)
        click.echo(f"wrote {path}")


def run_manifest(out_dir: Path) -> Path | None:
    """The manifest a t3al-adapt run read by default: the one recorded in the cache its config.json names."""
    from t3al.cache import CacheError, CacheReader

    try:
        cache = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))["cache"]["path"]
        return CacheReader(cache).manifest_path
    except (OSError, ValueError, KeyError, TypeError, CacheError):  # no record, or a cache moved away
        return None


def _durations(path: Path) -> dict[str, float]:
    """Each video's duration in seconds, where the ground truth gives one (a t3al manifest, an
    ActivityNet JSON); none from a CSV."""
    if path.suffix.lower() != ".json":
        return {}
    data = json.loads(read_text(path, EvaluationError))
    videos = data.get("videos") if data.get("format") == "t3al-manifest" else data.get("database")
    return {video: float(entry["duration"]) for video, entry in (videos or {}).items()
            if isinstance(entry, dict) and isinstance(entry.get("duration"), (int, float))}


def _outside_notes(detections: Detections, durations: dict[str, float]) -> None:
    """Say how many detections start before 0 s or end after their video's duration: they are
    scored as given, which is rarely what their producer meant."""
    early = int((detections.start < 0).sum())
    late = sum(end > durations[video] for video, end in zip(detections.video, detections.end) if video in durations)
    if early or late:
        click.echo(f"note: {early} detection(s) start before 0 s and {late} end after their video's duration; "
                   "they are scored as given (clip them to the video if that is not meant)")


def _ground_truth_tious(path: Path) -> tuple[float, ...]:
    if path.suffix.lower() == ".json":
        data = json.loads(read_text(path, EvaluationError))
        if data.get("format") == "t3al-manifest":
            return manifest_tious(Manifest.from_dict(data, str(path)))
    return THUMOS14_TIOUS


def _read_results(path: Path) -> dict:
    try:
        data = json.loads(read_text(path, EvaluationError))
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(data, dict) or "tiou" not in data or not ("mean" in data or "map" in data):
        raise EvaluationError(f"{path}: not a results file (needs 'tiou' and 'mean' or 'map')")
    return data


def _own_presences(detections: Path) -> Path | None:
    """``detections`` when it is a detection JSON with a ``presence`` object, else None."""
    if detections.suffix.lower() != ".json":
        return None
    return detections if "presence" in json.loads(read_text(detections, EvaluationError)) else None


def _open_set_figures(detections: Detections, gt: GroundTruth, classes: list[str],
                      presence_source: Path | None) -> dict:
    """Print and return the video flags and (when there are presences) the presence quality."""
    flags = video_flags(detections, gt, classes)
    figures = {"videos": flags}
    if flags["videos_without"]:
        click.echo(f"videos without any of the classes: {flags['videos_without']}, with detections: "
                   f"{flags['flagged_without']:.1f} %")
    if flags["videos_with"]:
        click.echo(f"videos with one of the classes: {flags['videos_with']}, with a detection of one they hold: "
                   f"{flags['found_with']:.1f} %")
    if presence_source is not None:
        quality = presence_quality(read_presences(presence_source), gt, classes)
        figures["presence"] = quality
        click.echo(f"presence over {quality['pairs']} video-action pairs ({quality['positive_pairs']} holding the "
                   f"action): AP {quality['ap']:.1f}, ROC AUC {quality['auc']:.1f}")
    else:
        click.echo("note: no presences (a closed-world run, or detections as CSV: give --presence presence.csv), "
                   "so no presence AP or AUC")
    return figures


def _notes(result: MAPResult) -> None:
    if result.n_dropped:
        click.echo(f"note: {result.n_dropped} detections on videos without ground truth of the evaluated "
                   "classes were dropped")
    if result.classes_without_detections:
        click.echo(f"note: no detections for {', '.join(result.classes_without_detections)} (AP 0, counted)")


def _json_text(data: dict) -> str:
    return json.dumps(data, indent=1) + "\n"


def _write_output(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path`` whole; a file holding other content is replaced only with
    --overwrite (the same results rerun rewrite it unchanged). A write that fails (a parent that
    is a file, a read-only or full disk) is one line, and leaves the file as it was."""
    if path.is_file() and path.read_bytes() != text.encode("utf-8") and not overwrite:
        raise EvaluationError(f"{path} holds other results; choose another file, or pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
    except OSError as err:
        raise EvaluationError(f"{path}: cannot write ({write_problem(err)}); nothing was written") from None


class _errors:
    """Turn the project's errors (``T3alError``) into a one-line message and exit status 1 (no traceback)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, T3alError):
            click.echo(f"t3al-evaluate: error: {error}", err=True)
            sys.exit(1)
        return False
