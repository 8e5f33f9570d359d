"""A generated video world, deterministic by seed: mp4 files, a manifest and per-frame captions.

Each video has one scene, a main action class repeated 1-5 times (sometimes one instance of a
second class), background stretches between them where distractors drift by or the next actor
waits idle, a frame rate of 24, 25, 29.97 or 30 and a length of 10-40 s.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import imageio_ffmpeg
import numpy as np
from tqdm import tqdm

from .scenes import (ACTIONS, DISTRACTOR_KINDS, SCENES, SIZE, ActionClass, Distractor, Pose, compose,
                     draw_distractor)

DATASET = "t3al-world"
FRAME_RATES = (24.0, 25.0, 30000 / 1001, 30.0)
DURATIONS = (10.0, 40.0)
SETTINGS = {"75_25": 0.25, "50_50": 0.5}
N_SPLITS = 10
DISTRACTOR_COLOURS = (("grey", (120, 120, 120)), ("brown", (120, 80, 40)), ("black", (20, 20, 20)),
                      ("red", (220, 40, 40)), ("blue", (40, 70, 220)), ("yellow", (240, 220, 40)),
                      ("white", (245, 245, 245)))
DISTRACTOR_VERBS = {"cloud": "drifting over", "leaf": "falling on", "bird": "flying over",
                    "balloon": "floating over"}


@dataclass(frozen=True)
class Instance:
    """One ground-truth action instance, in seconds, with how its actor is placed."""

    label: str
    start: float
    end: float
    pose: Pose
    idle_from: float


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video and describe its frames."""

    video_id: str
    seed: int
    fps: float
    n_frames: int
    scene: str
    brightness: float
    instances: tuple[Instance, ...]
    distractors: tuple[Distractor, ...] = field(default=())

    @property
    def duration(self) -> float:
        """Length in seconds: the number of frames over the frame rate."""
        return self.n_frames / self.fps


def class_by_name(name: str) -> ActionClass:
    """The action class with this name."""
    for action in ACTIONS:
        if action.name == name:
            return action
    raise KeyError(f"unknown action class {name!r}; known: {[a.name for a in ACTIONS]}")


def prompt_words(name: str) -> str:
    """A CamelCase class name as words ("BallBounce" -> "Ball Bounce"), as the class prompts use it."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)


def _random_pose(rng: np.random.Generator) -> Pose:
    return Pose(x=float(rng.uniform(28, 68)), y=float(rng.uniform(30, 66)), size=float(rng.uniform(12, 20)),
                speed=float(rng.uniform(0.7, 1.4)), phase=float(rng.uniform(0, 2 * np.pi)))


def _plan_instances(rng: np.random.Generator, duration: float, main: str, other: str) -> list[Instance]:
    instances, t = [], float(rng.uniform(1.0, 4.0))
    while t + 2.0 + 1.0 <= duration and len(instances) < 5:
        length = min(float(rng.uniform(2.0, 7.0)), duration - 1.0 - t)
        label = other if rng.random() < 0.15 else main
        gap_start = instances[-1].end if instances else 0.0
        idle_from = float(rng.uniform(gap_start, t)) if rng.random() < 0.4 else t
        instances.append(Instance(label, round(t, 2), round(t + length, 2), _random_pose(rng), round(idle_from, 2)))
        t += length + float(rng.uniform(1.5, 6.0))
    return instances


def _plan_distractors(rng: np.random.Generator, duration: float) -> list[Distractor]:
    items = []
    for _ in range(int(rng.integers(0, 4))):
        kind = DISTRACTOR_KINDS[int(rng.integers(len(DISTRACTOR_KINDS)))]
        colour_name, colour = DISTRACTOR_COLOURS[int(rng.integers(len(DISTRACTOR_COLOURS)))]
        start = float(rng.uniform(0, max(duration - 3.0, 0.1)))
        end = min(duration, start + float(rng.uniform(3.0, 10.0)))
        items.append(Distractor(kind, colour_name, colour, round(start, 2), round(end, 2),
                                x=float(rng.uniform(10, 86)), y=float(rng.uniform(10, 70)),
                                vx=float(rng.uniform(-6, 6)), vy=float(rng.uniform(-2, 4))))
    return items


def _alternate(instances: list[Instance], main: str, second: str) -> list[Instance]:
    """Every other instance of the main action (the 2nd, 4th, ...) becomes the second action."""
    mains = [i for i, instance in enumerate(instances) if instance.label == main]
    return [replace(instance, label=second) if i in mains[1::2] else instance for i, instance in enumerate(instances)]


def plan_video(seed: int, index: int, main: str, classes: Sequence[str],
               durations: tuple[float, float] = DURATIONS, second: str | None = None) -> VideoSpec:
    """The plan of one video, a pure function of its arguments; with ``second``, every other
    instance of the main action is that action instead (same times, so one-action plans stay as they were)."""
    rng = np.random.default_rng([seed, index])
    fps = FRAME_RATES[int(rng.integers(len(FRAME_RATES)))]
    duration = float(rng.uniform(*durations))
    others = [c for c in classes if c != main] or [main]
    other = others[int(rng.integers(len(others)))]
    instances = _plan_instances(rng, duration, main, other)
    if second is not None:
        instances = _alternate(instances, main, second)
    scene = SCENES[int(rng.integers(len(SCENES)))].name
    return VideoSpec(video_id=f"world_{seed}_{index:03d}", seed=seed, fps=fps, n_frames=int(round(duration * fps)),
                     scene=scene, brightness=float(rng.uniform(0.8, 1.15)), instances=tuple(instances),
                     distractors=tuple(_plan_distractors(rng, duration)))


def second_actions(seed: int, mains: Sequence[str], classes: Sequence[str], fraction: float) -> list[str | None]:
    """For each video, a second action (another class) with probability ``fraction``, else None;
    drawn from its own generator, so the world's other draws do not change."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the fraction of videos with two actions must lie in [0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 2])
    seconds: list[str | None] = []
    for main in mains:
        others = [c for c in classes if c != main]
        pick, draw = rng.random(), int(rng.integers(len(others)))
        seconds.append(others[draw] if pick < fraction else None)
    return seconds


def plan_world(seed: int, n_videos: int, n_classes: int = len(ACTIONS),
               durations: tuple[float, float] = DURATIONS, two_actions: float = 0.0) -> list[VideoSpec]:
    """Plans for n_videos videos whose main classes cycle through the first n_classes classes;
    a ``two_actions`` fraction of them alternate their main action with a second one."""
    if not 2 <= n_classes <= len(ACTIONS):
        raise ValueError(f"n_classes must be between 2 and {len(ACTIONS)}, got {n_classes}")
    if not 6.0 <= durations[0] <= durations[1]:
        raise ValueError(f"video durations must be (min, max) seconds with 6 <= min <= max, got {durations}")
    if n_videos < n_classes:
        raise ValueError(f"{n_videos} videos cannot hold all {n_classes} classes; ask for at least {n_classes}")
    classes = [a.name for a in ACTIONS[:n_classes]]
    mains = [classes[int(c)] for c in np.random.default_rng(seed).permutation(n_videos) % n_classes]
    seconds = second_actions(seed, mains, classes, two_actions)
    specs = [plan_video(seed, i, main, classes, durations, second) for i, (main, second) in enumerate(zip(mains, seconds))]
    return _cover_classes(specs, mains)


def _cover_classes(specs: list[VideoSpec], mains: list[str]) -> list[VideoSpec]:
    """Give each class without any drawn instance its first main video's first instance, so every
    class of the vocabulary has ground truth (worlds where all classes were drawn stay as drawn)."""
    drawn = {inst.label for spec in specs for inst in spec.instances}
    for label in dict.fromkeys(m for m in mains if m not in drawn):
        k = mains.index(label)
        first = replace(specs[k].instances[0], label=label)
        specs[k] = replace(specs[k], instances=(first, *specs[k].instances[1:]))
    return specs


def _active(spec: VideoSpec, t: float) -> tuple[Instance | None, bool]:
    """The instance acting or waiting idle at time t, and whether it is idle."""
    for inst in spec.instances:
        if inst.start <= t < inst.end:
            return inst, False
        if inst.idle_from <= t < inst.start:
            return inst, True
    return None, False


def _visible_distractors(spec: VideoSpec, t: float) -> list[Distractor]:
    return [d for d in spec.distractors if d.start <= t < d.end]


def _article(noun: str, adjective: str) -> str:
    """The article with the adjective ("a red", "an orange"), or the adjective alone before a plural."""
    if noun.endswith("s"):
        return adjective
    return f"{'an' if adjective[0] in 'aeiou' else 'a'} {adjective}"


def caption_at(spec: VideoSpec, t: float) -> str:
    """A short description of what is visible at time t (the training text for that frame)."""
    inst, idle = _active(spec, t)
    place = "on" if spec.scene in ("grass", "sand", "snow") else "in front of" if spec.scene == "brick" else "in the"
    if inst is not None:
        action = class_by_name(inst.label)
        verb = "resting" if idle else action.verb
        return f"{_article(action.noun, action.colour_name)} {action.noun} {verb} {place} {spec.scene}"
    visible = _visible_distractors(spec, t)
    if visible:
        d = visible[0]
        return f"{_article(d.kind, d.colour_name)} {d.kind} {DISTRACTOR_VERBS[d.kind]} {spec.scene}"
    return f"an empty {spec.scene} background"


def label_at(spec: VideoSpec, t: float) -> str | None:
    """The ground-truth action at time t, or None for background (idle actors are background)."""
    inst, idle = _active(spec, t)
    return None if inst is None or idle else inst.label


def frame_times(spec: VideoSpec) -> np.ndarray:
    """The presentation time of every frame, in seconds."""
    return np.arange(spec.n_frames) / spec.fps


def iter_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """The video's frames as SIZE x SIZE x 3 uint8 arrays, in order (deterministic)."""
    rng = np.random.default_rng([spec.seed, int(spec.video_id.rsplit("_", 1)[1]), 1])
    scene = next(s for s in SCENES if s.name == spec.scene)
    background = scene.texture(rng)
    for t in frame_times(spec):
        flicker = spec.brightness * (1.0 + 0.05 * np.sin(2 * np.pi * t / 7.0))
        image, draw = compose(background, flicker)
        for item in _visible_distractors(spec, t):
            draw_distractor(draw, item, t)
        inst, idle = _active(spec, t)
        if inst is not None:
            action = class_by_name(inst.label)
            tau = 0.0 if idle else t - inst.start
            action.draw(draw, tau, tau / (inst.end - inst.start), inst.pose, action.colour, idle)
        noise = rng.integers(-6, 7, (SIZE, SIZE, 3), dtype=np.int16)
        yield np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)


def write_mp4(spec: VideoSpec, path: Path) -> None:
    """Encode the video's frames to H.264 (yuv420p) by piping raw RGB into ffmpeg."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{SIZE}x{SIZE}", "-r", f"{spec.fps:.6f}", "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
               "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1", "-flags", "+bitexact",
               "-fflags", "+bitexact", "-map_metadata", "-1", str(path)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for frame in iter_frames(spec):
        process.stdin.write(frame.tobytes())
    _, error = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {error.decode(errors='replace').strip()}")


def class_splits(classes: Sequence[str], seed: int) -> dict[str, list[list[str]]]:
    """Ten random unseen-class lists per setting (25% and 50% of the classes, at least one)."""
    rng = np.random.default_rng([seed, 7525])
    splits = {}
    for setting, fraction in SETTINGS.items():
        n_unseen = max(1, int(round(fraction * len(classes))))
        splits[setting] = [sorted(rng.choice(list(classes), n_unseen, replace=False).tolist())
                           for _ in range(N_SPLITS)]
    return splits


def build_manifest(specs: Sequence[VideoSpec], classes: Sequence[str], seed: int) -> dict:
    """The ground truth of the world in the shared t3al manifest format."""
    return {
        "format": "t3al-manifest", "version": 1, "dataset": DATASET, "classes": list(classes),
        "videos": {s.video_id: {"subset": "test", "duration": s.duration, "fps": s.fps} for s in specs},
        "annotations": [{"video": s.video_id, "start": i.start, "end": i.end, "label": i.label}
                        for s in specs for i in s.instances],
        "splits": class_splits(classes, seed),
        "tiou": [0.3, 0.4, 0.5, 0.6, 0.7],
    }


def build_captions(specs: Sequence[VideoSpec]) -> dict:
    """Per-frame captions as runs {video: [{"first", "last", "text"}]} (frame indices, inclusive)."""
    out = {}
    for spec in specs:
        runs: list[dict] = []
        for index, t in enumerate(frame_times(spec)):
            text = caption_at(spec, t)
            if runs and runs[-1]["text"] == text:
                runs[-1]["last"] = index
            else:
                runs.append({"first": index, "last": index, "text": text})
        out[spec.video_id] = runs
    return out


def write_split_lists(manifest: dict, root: Path) -> None:
    """The splits as the community's tree: splits/train_X_test_Y/<dataset>/{train,test}/split_i.list."""
    for setting, lists in manifest["splits"].items():
        seen_pct, unseen_pct = setting.split("_")
        for i, unseen in enumerate(lists):
            seen = [c for c in manifest["classes"] if c not in unseen]
            for part, names in (("train", seen), ("test", unseen)):
                folder = root / f"train_{seen_pct}_test_{unseen_pct}" / manifest["dataset"] / part
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"split_{i}.list").write_text("".join(f"{n}\n" for n in names))


def generate_world(out_dir: Path, seed: int, n_videos: int, n_classes: int = len(ACTIONS),
                   durations: tuple[float, float] = DURATIONS, two_actions: float = 0.0) -> Path:
    """Write videos/*.mp4, manifest.json, captions.json and splits/ under out_dir; returns the manifest path."""
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    specs = plan_world(seed, n_videos, n_classes, durations, two_actions)
    for spec in tqdm(specs, desc=f"world seed {seed}", unit="video"):
        write_mp4(spec, out_dir / "videos" / f"{spec.video_id}.mp4")
    manifest = build_manifest(specs, [a.name for a in ACTIONS[:n_classes]], seed)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out_dir / "captions.json").write_text(json.dumps(build_captions(specs)))
    write_split_lists(manifest, out_dir / "splits")
    return out_dir / "manifest.json"
