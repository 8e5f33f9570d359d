"""t3al-manifest: build a dataset manifest from public annotation files, or summarise one."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from t3al.cache import T3alError

from .builders import (
    add_video_info,
    from_activitynet_json,
    from_thumos14_json,
    from_thumos14_official,
    read_class_list,
    read_split_lists,
)
from .manifest import Manifest

_EXISTING = click.Path(exists=True, path_type=Path)
_splits_option = click.option("--splits", "splits_root", type=_EXISTING,
                              help="Folder holding train_75_test_25/ and train_50_test_50/ split lists.")
_output_option = click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
                              help="Manifest JSON to write.")


def _finish(manifest: Manifest, splits_root: Path | None, split_folder: str, output: Path) -> None:
    if splits_root is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manifest.splits = read_split_lists(splits_root, split_folder, manifest.classes)
        for warning in caught:
            click.echo(f"note: {warning.message}", err=True)
    manifest.save(output)
    click.echo(_summary(manifest, output))


def _summary(manifest: Manifest, name: Path | str) -> str:
    subsets: dict[str, int] = {}
    for entry in manifest.videos.values():
        subsets[entry["subset"]] = subsets.get(entry["subset"], 0) + 1
    annotated = len({a["video"] for a in manifest.annotations})
    lines = [f"{name}: {manifest.dataset}, {len(manifest.classes)} classes, {len(manifest.videos)} videos "
             f"({', '.join(f'{k} {v}' for k, v in sorted(subsets.items()))}; {annotated} with instances), "
             f"{len(manifest.annotations)} instances, tIoU {manifest.tiou}"]
    for setting, lists in manifest.splits.items():
        counts = [manifest.evaluation_set(setting, i) for i in range(len(lists))]
        lines.append(f"  {setting}: {len(lists)} splits of {len(lists[0])} unseen classes; videos per split "
                     f"{[len(s.videos) for s in counts]}; instances {[len(s.annotations) for s in counts]}")
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Build t3al manifests (videos, ground truth, classes, zero-shot splits) from public annotations.

    \b
    Examples:
      t3al-manifest thumos14 --annotations thumos_anno_action.json --info thumos_fps.json \\
          --splits data/splits -o manifests/thumos14.json
      t3al-manifest thumos14-official TH14_Temporal_annotations_test/annotation --splits data/splits -o m.json
      t3al-manifest activitynet --annotations activity_net.v1-3.min.json \\
          --classes action_name.csv --video-info video_info_new.csv --splits data/splits -o anet.json
      t3al-manifest show manifests/thumos14.json
    """


@main.command("thumos14")
@click.option("--annotations", type=_EXISTING, required=True,
              help="T3AL-style JSON {video: {annotations}} or ActivityNet-style JSON {database: ...}.")
@click.option("--info", type=_EXISTING, help="ActivityNet-style JSON supplying per-video fps (and durations).")
@_splits_option
@_output_option
def thumos14(annotations: Path, info: Path | None, splits_root: Path | None, output: Path) -> None:
    """THUMOS14 from the T3AL-style or ActivityNet-style annotation JSON (validation + test)."""
    with _errors():
        manifest = from_thumos14_json(annotations)
        if info is not None:
            add_video_info(manifest, info)
        _finish(manifest, splits_root, "THUMOS14", output)


@main.command("thumos14-official")
@click.argument("folders", type=_EXISTING, nargs=-1, required=True)
@_splits_option
@_output_option
def thumos14_official(folders: tuple[Path, ...], splits_root: Path | None, output: Path) -> None:
    """THUMOS14 from the official per-class files <Class>_val.txt / <Class>_test.txt in FOLDERS."""
    with _errors():
        parts = [from_thumos14_official(folder) for folder in folders]
        manifest = parts[0]
        for part in parts[1:]:
            manifest.videos.update(part.videos)
            manifest.annotations += part.annotations
        manifest.classes = sorted({a["label"] for a in manifest.annotations})
        _finish(manifest, splits_root, "THUMOS14", output)


@main.command("activitynet")
@click.option("--annotations", type=_EXISTING, required=True, help="ActivityNet-v1.3 JSON (database/annotations).")
@click.option("--classes", "class_file", type=_EXISTING,
              help="Class vocabulary, one per line (.csv: header skipped); default: labels found.")
@click.option("--video-info", type=_EXISTING, help="video_info CSV (video,...,seconds,fps,...) for fps/durations.")
@click.option("--subsets", default="training,validation", show_default=True,
              help="Comma-separated subsets to keep (the protocol evaluates training + validation).")
@click.option("--video-prefix", default="v_", show_default=True, help="Prefix making ids the video file stems.")
@_splits_option
@_output_option
def activitynet(annotations: Path, class_file: Path | None, video_info: Path | None, subsets: str,
                video_prefix: str, splits_root: Path | None, output: Path) -> None:
    """ActivityNet-v1.3 from its annotation JSON."""
    with _errors():
        classes = read_class_list(class_file) if class_file else None
        manifest = from_activitynet_json(annotations, "activitynet", classes, subsets.split(","), video_prefix)
        if video_info is not None:
            add_video_info(manifest, video_info)
        _finish(manifest, splits_root, "ActivityNet", output)


@main.command("show")
@click.argument("manifest_path", type=_EXISTING)
def show(manifest_path: Path) -> None:
    """Validate a manifest and print its size and per-split evaluation sets."""
    with _errors():
        click.echo(_summary(Manifest.load(manifest_path), manifest_path))


class _errors:
    """Turn the project's errors (``T3alError``) into a one-line message and exit status 1 (no traceback)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, T3alError):
            click.echo(f"t3al-manifest: error: {error}", err=True)
            sys.exit(1)
        return False
