"""t3al-demo: the whole pipeline on a generated world with the embedded tiny CoCa, in a few minutes on a CPU.

It runs the same commands a user runs on a real dataset, in this process, and prints each one:
t3al-extract (features + captions), t3al-adapt for both zero-shot settings and four methods
(naive VLM baseline, T3AL with T=0, T3AL, T3AL without caption suppression), t3al-evaluate
table / report; then one table per setting and what it shows; then t3al-localize over every video
with a few action names, open set and closed world, in a table that counts every video.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import click

from t3al.cache import T3alError, write_atomically

from .model import CHECKPOINT, MODEL_NAME
from .world import DURATIONS, generate_world

METHODS = {"naive": ["--method", "naive"], "T3AL_0": ["--method", "t3al", "--steps", "0", "--no-suppression"],
           "T3AL": ["--method", "t3al"], "T3AL no suppression": ["--method", "t3al", "--no-suppression"]}
# Why T3AL scores below T3AL_0 in the demo world (measured in demo/README.md), printed under the tables.
EXPLANATION = (
    "In the default demo world (seed 2026) T3AL scores below T3AL_0, and T3AL without suppression "
    "scores about as T3AL_0 does: "
    "the gap is caption-guided suppression, not adaptation. The tiny CoCa's captions describe the "
    "scene rather than the moving shape, so the caption directions of true segments disagree and "
    "suppression drops some of them; the public learning rates barely move this small model's "
    "projections, so adaptation changes the curves little. See demo/README.md.")
SETTINGS = ("75_25", "50_50")


class CommandFailed(T3alError):
    """A command the demo ran failed; the message names the command."""


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the world, the model, and how densely it captions."""

    out: Path
    seed: int = 2026
    videos: int = 24
    classes: int = 12
    durations: tuple[float, float] = DURATIONS
    caption_fps: float = 1.0
    jobs: int = 2
    plots: int = 2
    checkpoint: Path = CHECKPOINT
    two_actions: float = 0.0  # fraction of videos alternating two actions (0: the published demo world)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    def run_dir(self, setting: str, method: str) -> Path:
        return self.out / "runs" / setting / method.replace(" ", "_")


def run_command(prog: str, command: click.Command, args: list[str]) -> None:
    """Run a click command in this process as ``prog args`` would, echoing the command line first;
    its own printout (tables, paths) is left out, the demo prints one table per setting at the end."""
    click.secho(f"$ {prog} {' '.join(args)}", fg="cyan", err=True)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            command.main(args=args, prog_name=prog, standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise CommandFailed(f"{prog} {' '.join(args)} failed (exit {exit_.code})") from None
    except click.ClickException as error:
        raise CommandFailed(f"{prog} failed: {error.format_message()}") from None


def extract(plan: DemoPlan) -> None:
    """Stage one: features of every frame, captions at caption_fps, class prompts, into plan.cache."""
    from t3al.extract.cli import main as extract_main

    run_command("t3al-extract", extract_main, [
        "run", str(plan.world / "videos"), str(plan.cache), "--model", MODEL_NAME, "--pretrained", str(plan.checkpoint),
        "--manifest", str(plan.world / "manifest.json"), "--device", "cpu", "--batch-size", "256",
        "--caption-fps", str(plan.caption_fps), "--caption-batch-size", "64", "--caption-length", "16"])


def adapt(plan: DemoPlan, setting: str, method: str) -> Path:
    """Stage two for one setting and method; returns its results.json."""
    from t3al.adapt.cli import main as adapt_main

    out = plan.run_dir(setting, method)
    run_command("t3al-adapt", adapt_main, [str(plan.cache), "--split", setting, "--out", str(out),
                                           "--jobs", str(plan.jobs), "--no-progress", *METHODS[method]])
    return out / "results.json"


def tables(plan: DemoPlan) -> str:
    """One terminal table per setting, also written as Markdown and HTML next to the runs, and
    what the tables show."""
    from t3al.evaluate.cli import main as evaluate_main
    from t3al.evaluate.report import format_table

    text = []
    for setting in SETTINGS:
        results = [str(plan.run_dir(setting, m) / "results.json") for m in METHODS]
        names = [arg for m in METHODS for arg in ("--name", m)]
        for fmt, suffix in (("markdown", "md"), ("html", "html")):
            run_command("t3al-evaluate", evaluate_main, ["table", *results, *names, "--format", fmt, "--overwrite",
                                                         "-o", str(plan.out / f"table_{setting}.{suffix}")])
        documents = {m: json.loads(Path(r).read_text()) for m, r in zip(METHODS, results)}
        text.append(f"setting {setting} (mAP %, mean ± std over the 10 splits)\n" + format_table(documents))
    return "\n\n".join(text) + "\n\n" + EXPLANATION


def reports(plan: DemoPlan) -> Path:
    """One t3al-evaluate HTML report per run and an index page with both tables linking to them."""
    from t3al.evaluate.cli import main as evaluate_main
    from t3al.evaluate.pages import render
    from t3al.evaluate.report import table_cells

    sections = []
    for setting in SETTINGS:
        documents = {m: json.loads((plan.run_dir(setting, m) / "results.json").read_text()) for m in METHODS}
        links = []
        for method in METHODS:
            run_dir = plan.run_dir(setting, method)
            run_command("t3al-evaluate", evaluate_main, ["report", str(run_dir), "--manifest",
                                                         str(plan.world / "manifest.json"), "--plots", str(plan.plots)])
            links.append({"href": (run_dir / "report" / "index.html").relative_to(plan.out).as_posix(),
                          "text": f"{setting} {method}: report with plots"})
        sections.append({"setting": setting, "table": table_cells(documents), "links": links})
    index = plan.out / "index.html"
    write_atomically(index, render("index.html", "t3al.demo", seed=plan.seed, sections=sections,
                                   explanation=EXPLANATION))
    return index


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def _open_set_row(rule: str, detections_file: Path, manifest: Path, classes: list[str]) -> str:
    """One row of the open-set table: mAP with every video counted and under the zero-shot protocol,
    the videos flagged and found, and the presences' AP and AUC (when the run has presences and the
    world has pairs both with and without the actions)."""
    from t3al.evaluate import Detections, EvaluationError, GroundTruth, evaluate_detections, manifest_tious
    from t3al.evaluate.presence import presence_quality, read_presences, video_flags
    from t3al.manifests import Manifest

    detections, gt = Detections.read(detections_file), GroundTruth.read(manifest)
    tious = manifest_tious(Manifest.load(manifest))
    every = evaluate_detections(detections, gt, classes, tious, open_set=True).avg
    protocol = evaluate_detections(detections, gt, classes, tious).avg
    flags = video_flags(detections, gt, classes)
    try:
        quality = presence_quality(read_presences(detections_file), gt, classes)
        presence = f"{quality['ap']:11.1f} {quality['auc']:12.1f}"
    except EvaluationError:  # a closed-world run, or a world without action-less pairs
        presence = f"{'-':>11} {'-':>12}"
    return (f"{rule:<13} {every:15.2f} {protocol:12.2f} {_percent(flags['flagged_without']):>19} "
            f"{_percent(flags['found_with']):>13} {presence}")


def open_set_table(plan: DemoPlan) -> str:
    """t3al-localize over every video with the 75_25 setting's first unseen classes as the action
    names, open set (its default) and --closed-world, scored counting every video of the world."""
    from t3al.localize.cli import main as localize_main

    manifest = plan.world / "manifest.json"
    classes = json.loads(manifest.read_text())["splits"]["75_25"][0]
    rows = []
    for rule, extra in (("closed world", ["--closed-world"]), ("open set", [])):
        out = plan.out / "open_set" / rule.replace(" ", "_")
        run_command("t3al-localize", localize_main, [
            str(plan.cache), "--actions", ", ".join(classes), "--pretrained", str(plan.checkpoint), "--out", str(out),
            "--thumbnails", "0", "--jobs", str(plan.jobs), "--no-progress", "--overwrite", *extra])
        rows.append(_open_set_row(rule, out / "detections.json", manifest, classes))
    header = (f"{'rule':<13} {'mAP all videos':>15} {'mAP protocol':>12} {'action-less flagged':>19} "
              f"{'holders found':>13} {'presence AP':>11} {'presence AUC':>12}")
    return (f"open set: t3al-localize over all {plan.videos} videos, actions {', '.join(classes)} (Avg mAP %; "
            "'all videos' counts a detection in a video without the action as a false positive)\n"
            + "\n".join([header, "-" * len(header), *rows]))


def run_demo(plan: DemoPlan) -> dict:
    """World, extraction, both settings x three methods, tables and reports; returns timings and paths."""
    timings = {}
    started = time.time()
    if not (plan.world / "manifest.json").exists():
        generate_world(plan.world, plan.seed, plan.videos, plan.classes, plan.durations, plan.two_actions)
    timings["world"] = time.time() - started
    extract(plan)
    timings["extract"] = time.time() - started - sum(timings.values())
    for setting in SETTINGS:
        for method in METHODS:
            adapt(plan, setting, method)
    timings["adapt"] = time.time() - started - sum(timings.values())
    table = tables(plan)
    index = reports(plan)
    timings["report"] = time.time() - started - sum(timings.values())
    open_set = open_set_table(plan)
    timings["open_set"] = time.time() - started - sum(timings.values())
    summary = {"timings_s": {k: round(v, 1) for k, v in timings.items()}, "total_s": round(time.time() - started, 1),
               "table": table, "open_set": open_set, "index": str(index)}
    write_atomically(plan.out / "demo.json", json.dumps(summary, indent=1))
    return summary


def _durations(ctx: click.Context, param: click.Parameter, value: tuple[float, float]) -> tuple[float, float]:
    """Two finite positive lengths, the shortest first."""
    shortest, longest = value
    if not (math.isfinite(shortest) and math.isfinite(longest) and 0 < shortest <= longest):
        raise click.BadParameter(f"need 0 < shortest <= longest seconds, got {shortest:g} {longest:g}")
    return value


@click.command(help=__doc__)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for the world, the cache, the runs and the report (reused when it exists).")
@click.option("--seed", default=DemoPlan.seed, show_default=True,
              help="Seed of the held-out world (the tiny CoCa was trained on seed 1).")
@click.option("--videos", type=click.IntRange(min=1), default=DemoPlan.videos, show_default=True,
              help="Videos in the world.")
@click.option("--classes", type=click.IntRange(2, 12), default=DemoPlan.classes, show_default=True,
              help="Action classes in the world (2-12).")
@click.option("--durations", nargs=2, type=float, default=DURATIONS, show_default=True, callback=_durations,
              help="Shortest and longest video, seconds.")
@click.option("--caption-fps", type=click.FloatRange(min=0), default=DemoPlan.caption_fps, show_default=True,
              help="Captions per second of video (t3al-extract refuses NaN and infinity).")
@click.option("--jobs", type=click.IntRange(min=1), default=DemoPlan.jobs, show_default=True,
              help="Worker processes of t3al-adapt.")
@click.option("--plots", type=click.IntRange(min=0), default=DemoPlan.plots, show_default=True,
              help="Videos plotted per split in the reports.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=CHECKPOINT,
              show_default=True, help="Tiny CoCa weights (open_clip state_dict).")
@click.option("--two-actions", type=click.FloatRange(0, 1), default=DemoPlan.two_actions, show_default=True,
              help="Fraction of videos whose main action alternates with a second one (0: the published world).")
def main(out: Path, seed: int, videos: int, classes: int, durations: tuple[float, float], caption_fps: float,
         jobs: int, plots: int, checkpoint: Path, two_actions: float) -> None:
    plan = DemoPlan(out, seed, videos, classes, tuple(durations), caption_fps, jobs, plots, checkpoint, two_actions)
    try:
        summary = run_demo(plan)
    except T3alError as err:
        raise click.ClickException(str(err)) from None
    click.echo(summary["table"])
    click.echo("\n" + summary["open_set"])
    click.echo(f"report: {summary['index']}")
    click.echo("time (s): " + ", ".join(f"{k} {v}" for k, v in summary["timings_s"].items())
               + f", total {summary['total_s']}")


if __name__ == "__main__":
    main()
