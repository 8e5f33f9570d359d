"""Stage-two speed: seconds per video for the fast and direct paths, and a THUMOS14-sized setting.

    python benchmarks/bench_adapt.py per-video  [--frames 6000 --steps 60 --repeat 5 --batch 8]
    python benchmarks/bench_adapt.py setting    [--jobs 2 --split 75_25 --cache DIR --device cuda]
    python benchmarks/bench_adapt.py batched    [--videos 32 --device cpu --jobs 1 --steps 60]
    python benchmarks/bench_adapt.py one-video  [--device cuda --frames 6000 --steps 60 --repeat 5]
    python benchmarks/bench_adapt.py cache      --cache DIR [--videos 413]

``per-video`` times one video on one core with CoCa-sized heads (Dv = Dt = E = 768), K = 4, the
floor: the operations alone that any exact implementation must run, the named methods T3AL_0,
FreeZAD and AdaZAD on the same video, and the batched path.
``setting`` writes a cache of 413 videos with the THUMOS14 manifest's ids (N drawn from
1,000-15,000, random features) and times the run over the ten splits (``--device``: on the
batched path there).
``batched`` writes the first ``--videos`` of those videos, times their adaptations on all splits
of the setting video by video (``--jobs`` processes) and batched on ``--device``, and checks both
give the same detections: the share of video-splits with the same segments and labels must reach
``--min-agreement`` (all of them on the CPU, 98 % on a GPU), else it exits 1.
``one-video`` adapts one such video as a batch of one on ``--device`` (wall seconds after a
warm-up, the device synchronised), beside the CPU's one-thread fast path on the same video.
``cache`` writes the benchmark cache to ``--cache DIR`` (the first ``--videos`` of it) unless it is
there whole, for ``setting`` and ``bench_sweep.py`` to reuse.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from t3al.adapt.config import make_config
from t3al.adapt.algorithm.adapter import AdaptationInput, Projections, adapt_inputs, batch_bytes, batch_params, make_optimizer
from t3al.adapt.algorithm.localizer import T3AL
from t3al.adapt.engine.pipeline import run
from t3al.adapt.engine.request import Execution, Request, Task
from t3al.adapt.engine.runner import run_request
from t3al.adapt.engine.spec import RunSpec, build_spec
from t3al.adapt.engine.work import single_thread
from t3al.adapt.algorithm.video import VideoInput
from t3al.cache import CacheError, CacheInfo, CacheReader, CacheWriter, Head, ModelIdentity, VideoRecord

WIDTH = 768
N_CLASSES = 20
THUMOS_VIDEOS = 413
BENCH_MODEL = ModelIdentity("bench-768", "random")
REPO = Path(__file__).resolve().parents[1]
# Video-splits with the per-video path's segments and labels a batched run must reach: all of them
# on the CPU (exact), 98 % on a GPU, whose kernels round differently (a flip at a cut changes samples).
AGREEMENT = {False: 1.0, True: 0.98}


def random_head(rng: np.random.Generator, classes: list[str]) -> Head:
    scale = 1.0 / np.sqrt(WIDTH)
    return Head(rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) * scale,
                rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) * scale, np.log(100.0), classes,
                [f"a video of action {c}" for c in classes],
                rng.standard_normal((len(classes), WIDTH), dtype=np.float32))


def random_record(rng: np.random.Generator, video_id: str, n: int, fps: float = 30.0,
                  lean: np.ndarray | None = None) -> VideoRecord:
    """Frames that drift slowly (a random walk plus noise), plus ``lean`` on every frame when
    given; captions every third frame."""
    walk = np.cumsum(rng.standard_normal((n // 50 + 2, WIDTH), dtype=np.float32), axis=0)
    features = np.repeat(walk, 50, axis=0)[:n] + rng.standard_normal((n, WIDTH), dtype=np.float32)
    if lean is not None:
        features += lean.astype(np.float32)
    frames = np.arange(0, n, 3)
    return VideoRecord(video_id, features, np.arange(n) / fps, fps, frames, [""] * len(frames),
                       features[frames])


def time_video(config, video: VideoInput, head: Head, repeat: int) -> float:
    """Best of ``repeat`` runs of one video, in CPU seconds of this process on one thread
    (CPU time rather than wall time, so other work on the machine distorts it less)."""
    classes = torch.from_numpy(head.prompt_features[:5])
    times = []
    with single_thread():
        for _ in range(repeat):
            start = time.process_time()
            params = batch_params(head, config, 1)
            optimizer = make_optimizer(params, config) if config.steps else None
            T3AL(config).localize(video, params, optimizer, classes, torch.Generator().manual_seed(0))
            times.append(time.process_time() - start)
    return min(times)


def floor(config, frames: int, steps: int) -> float:
    """CPU seconds of what no exact implementation can skip: per step one pass over V (the
    selection ranks every frame under the current parameters) and Adam over the dense 768 x 768
    projections (weight decay makes every gradient entry non-zero); then the final V @ Pv, whose
    per-frame norms the proposal curve needs."""
    V, w = torch.randn(frames, WIDTH), torch.randn(WIDTH)
    params = Projections(torch.randn(WIDTH, WIDTH), torch.randn(WIDTH, WIDTH), np.log(100.0))
    optimizer = make_optimizer(params, config)
    for p in params.parameters():
        p.grad = torch.randn_like(p)
    with single_thread():
        start = time.process_time()
        for _ in range(steps):
            V @ w
            optimizer.step()
        V @ params.visual_proj
        return time.process_time() - start


def per_video(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    head = random_head(rng, [f"class{i}" for i in range(N_CLASSES)])
    video = VideoInput.from_record(random_record(rng, "bench", args.frames))
    config = make_config("thumos14", steps=args.steps)
    fast = time_video(config, video, head, args.repeat)
    direct = time_video(config.replace(implementation="direct"), video, head, 1)
    t0 = time_video(config.replace(steps=0), video, head, args.repeat)
    methods = {name: time_video(make_config("thumos14", method=name, steps=args.steps if name == "adazad" else None),
                                video, head, args.repeat) for name in ("t3al0", "freezad", "adazad")}
    lower = min(floor(config, args.frames, args.steps) for _ in range(args.repeat))
    print(f"N={args.frames} D=E={WIDTH} K={config.k} T={args.steps}, one thread, CPU seconds")
    print(f"  fast path    {fast:8.3f} s/video")
    print(f"  direct path  {direct:8.3f} s/video   (ratio direct/fast {direct / fast:.1f}x)")
    print(f"  T=0          {t0:8.3f} s/video")
    for name, seconds in methods.items():
        print(f"  --method {name:8s} {seconds:8.3f} s/video")
    print(f"  floor        {lower:8.3f} s/video   (V pass + Adam per step, final V @ Pv: no exact path does less)")
    batch = time_batched(config, video, head, args.batch, args.repeat)
    print(f"  batched      {batch:8.3f} s/video   ({args.batch} such adaptations stepping together, "
          f"adaptation and V @ Pv only)")


def time_batched(config, video: VideoInput, head: Head, count: int, repeat: int) -> float:
    """Best of ``repeat`` batched adaptations of ``count`` copies of ``video`` (own seeds), CPU
    seconds per adaptation on one thread."""
    params = Projections(torch.from_numpy(head.visual_proj), torch.from_numpy(head.text_projection),
                         head.logit_scale)
    with torch.no_grad():
        background = video.features.mean(dim=0) @ params.visual_proj
    times = []
    with single_thread():
        for _ in range(repeat):
            inputs = [AdaptationInput(video, torch.from_numpy(head.prompt_features[0]), background,
                                torch.Generator().manual_seed(seed)) for seed in range(count)]
            start = time.process_time()
            adapt_inputs(config, head, inputs, "cpu", budget=1 << 40)
            times.append((time.process_time() - start) / count)
    return min(times)


def one_video(args: argparse.Namespace) -> None:
    """One video of ``--frames`` frames and ``--steps`` steps adapted as a batch of one on ``--device``
    (the adaptation and its V @ Pv, wall seconds, best of ``--repeat`` after a warm-up), beside the
    CPU's fast path on the same video (one thread, CPU seconds)."""
    rng = np.random.default_rng(0)
    head = random_head(rng, [f"class{i}" for i in range(N_CLASSES)])
    video = VideoInput.from_record(random_record(rng, "bench", args.frames))
    config = make_config("thumos14", steps=args.steps)
    device = torch.device(args.device)
    params = Projections(torch.from_numpy(head.visual_proj), torch.from_numpy(head.text_projection),
                         head.logit_scale)
    with torch.no_grad():
        background = video.features.mean(dim=0) @ params.visual_proj
    times = []
    for _ in range(args.repeat + 1):  # the first run warms the device up (kernels, allocator) and is not counted
        one = AdaptationInput(video, torch.from_numpy(head.prompt_features[0]), background,
                          torch.Generator().manual_seed(0))
        start = time.perf_counter()
        adapt_inputs(config, head, [one], device, budget=batch_bytes(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = min(times[1:])
    cpu = time_video(config, video, head, args.repeat)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"one video, N={args.frames} D=E={WIDTH} K={config.k} T={args.steps}: adapted as a batch of one on "
          f"{args.device} ({name}) in {seconds:.3f} s wall (best of {args.repeat} after a warm-up of "
          f"{times[0]:.2f} s); the whole localization on the CPU's fast path, one thread: {cpu:.3f} CPU-s")
    if args.json_out:
        args.json_out.write_text(json.dumps({"frames": args.frames, "steps": args.steps, "device": args.device,
                                             "device_name": name, "seconds": seconds, "warm_up_seconds": times[0],
                                             "cpu_fast_path_seconds": cpu}, indent=1))


def annotated_class(manifest, video_id: str) -> str | None:
    """The video's most annotated class (of a tie, the first annotated: a set's order would change
    with each process's string hashing), None when it has no annotation."""
    labels = [a["label"] for a in manifest.annotations if a["video"] == video_id]
    return max(dict.fromkeys(labels), key=labels.count) if labels else None


def class_lean(head: Head, label: str, strength: float = 20.0) -> np.ndarray:
    """A frame offset whose projection points at ``label``, so that, as with a real model, a video
    leaning toward its annotated class tends to get the same pseudo-label in every split it is in."""
    text = head.prompt_features[head.class_names.index(label)] @ head.text_projection
    direction = np.linalg.solve(head.visual_proj.T.astype(np.float64), text.astype(np.float64))
    return strength * direction / np.linalg.norm(direction)


def write_thumos_sized_cache(root: str, limit: int | None = None) -> None:
    """413 random videos with the THUMOS14 manifest's ids (N drawn from 1,000-15,000), float16,
    each leaning toward its annotated class; only the first ``limit`` with a limit."""
    from t3al.manifests import Manifest
    manifest_path = REPO / "manifests" / "thumos14.json"
    manifest = Manifest.load(manifest_path)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    writer = CacheWriter(root, CacheInfo(BENCH_MODEL, feature_dtype="float16"))
    head = random_head(rng, manifest.classes)
    writer.write_head(head)
    writer.attach_manifest(manifest_path)
    frames = rng.integers(1000, 15001, size=len(manifest.videos))
    leans: dict[str, np.ndarray] = {}  # one solve per class rather than per video (0.5 s each on a loaded core)
    for video_id, n in list(zip(manifest.videos, frames))[:limit]:
        label = annotated_class(manifest, video_id)
        if label is not None and label not in leans:
            leans[label] = class_lean(head, label)
        writer.write_video(random_record(rng, video_id, int(n), lean=leans.get(label)))
    print(f"cache of {len(frames[:limit])} videos, mean N {frames[:limit].mean():.0f}, written in "
          f"{time.perf_counter() - start:.1f} s")


def is_bench_cache(path: str, videos: int = THUMOS_VIDEOS) -> bool:
    """Whether ``path`` already holds the first ``videos`` of the benchmark cache, all of them."""
    try:
        reader = CacheReader(path)
        return reader.model_id == BENCH_MODEL.key() and len(reader.video_ids()) == videos
    except CacheError:
        return False


def ensure_bench_cache(path: str, videos: int = THUMOS_VIDEOS) -> None:
    """The first ``videos`` of the benchmark cache at ``path``: reused when there whole, else
    written (a part left by a stopped run is written anew; any other folder is refused)."""
    if is_bench_cache(path, videos):
        print(f"cache of {videos} videos reused: {path}")
        return
    if Path(path).exists() and any(Path(path).iterdir()):
        try:
            partial = CacheReader(path).model_id == BENCH_MODEL.key()
        except CacheError:
            partial = False
        if not partial:
            raise SystemExit(f"{path} holds something else than the benchmark cache: choose another --cache")
        shutil.rmtree(path)
    write_thumos_sized_cache(path, videos)


def with_bench_cache(args: argparse.Namespace, run) -> None:
    """``run(cache)`` on ``--cache DIR`` (written there first unless it already holds the
    benchmark cache, and kept), else on a temporary one."""
    if args.cache:
        ensure_bench_cache(args.cache)
        run(args.cache)
        return
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        write_thumos_sized_cache(tmp)
        run(tmp)


def adaptations(spec: RunSpec) -> list[int]:
    """Frame counts of the distinct (video, pseudo-label) pairs of a run's splits (of the videos
    in its cache): the adaptations it needs, since splits giving a video the same pseudo-label share one."""
    head = spec.reader.head()
    config = next(iter(spec.configs.values()))
    vocabularies: dict[str, list[list[str]]] = {}
    for index in spec.indices:
        evaluation = spec.evaluation(index)
        for video_id in evaluation.videos:
            vocabularies.setdefault(video_id, []).append(evaluation.classes)
    frames = []
    for video_id, vocabulary in vocabularies.items():
        if video_id not in spec.reader:
            continue
        video = VideoInput.from_record(spec.reader.video(video_id))
        params = Projections(torch.from_numpy(head.visual_proj), torch.from_numpy(head.text_projection),
                             head.logit_scale)
        labels = {classes[T3AL(config).pseudo_label(video, params, torch.from_numpy(
            head.prompt_features[head.prompt_index(classes)]))[0]] for classes in vocabulary}
        frames += [video.n_frames] * len(labels)
    return frames


def setting_floor(config, frames: list[int]) -> float:
    """The floor summed over a setting's adaptations, from floors at two sizes (it is linear in N)."""
    small, large = (min(floor(config, n, config.steps) for _ in range(3)) for n in (1000, 15000))
    per_frame = (large - small) / 14000
    return sum(small + per_frame * (n - 1000) for n in frames)


def time_setting(cache: str, args: argparse.Namespace) -> None:
    spec = build_spec(cache, args.split, options={"steps": args.steps}, jobs=args.jobs, device=args.device)
    config = next(iter(spec.configs.values()))
    frames = adaptations(spec)
    lower = setting_floor(config, frames)
    print(f"setting {args.split}: {len(frames)} distinct adaptations (mean N {np.mean(frames):.0f}); their floor "
          f"{lower:.0f} CPU-s, {lower / args.jobs:.0f} s on {args.jobs} perfectly scaling cores")
    count = [0]
    start = time.perf_counter()
    result = next(iter(run(spec, on_video=lambda n: count.__setitem__(0, count[0] + n)).values()))
    elapsed = time.perf_counter() - start
    where = f"batched on {spec.execution.device}" if spec.execution.device else "video by video"
    print(f"setting {args.split}: {count[0]} video-splits {where} in {elapsed:.1f} s with --jobs {args.jobs} "
          f"({elapsed / count[0] * args.jobs:.3f} core-s per video-split); avg mAP {result.document['mean']['avg']:.2f}")


def batched(args: argparse.Namespace) -> None:
    """Per-video against batched adaptation of the first ``--videos`` videos, all splits of the setting."""
    with tempfile.TemporaryDirectory(dir=args.tmp) as cache:
        write_thumos_sized_cache(cache, args.videos)
        spec = build_spec(cache, args.split, options={"steps": args.steps}, device=args.device)
        tasks = tuple(Task(i, v, tuple(spec.evaluation(i).classes)) for i in spec.indices
                      for v in spec.evaluation(i).videos if v in spec.reader)
        config = next(iter(spec.configs.values()))
        frames = adaptations(spec)
        timings = {}
        for name, device, jobs in (("video by video", None, args.jobs), (f"batched on {args.device}", args.device, 1)):
            start, cpu = time.perf_counter(), time.process_time()
            results = run_request(Request(spec.reader, tasks, {"": config}, execution=Execution(jobs, device=device)))
            timings[name] = (time.perf_counter() - start, time.process_time() - cpu, jobs,
                             [results.outcome("", i).results for i in spec.indices])
    (per_video, _, _, expected), (batch, _, _, got) = timings.values()
    same = worst = 0
    pairs = [(a, b) for split_a, split_b in zip(expected, got) for a, b in zip(split_a, split_b)]
    for a, b in pairs:
        same += (a.segments, a.labels) == (b.segments, b.labels)
        if a.segments == b.segments:
            worst = max(worst, float(np.abs(np.subtract(a.scores, b.scores)).max(initial=0.0)))
    print(f"{args.videos} videos, {len(pairs)} video-splits, {len(frames)} distinct adaptations (mean N "
          f"{np.mean(frames):.0f}), T={args.steps}")
    for name, (elapsed, cpu, jobs, _) in timings.items():
        print(f"  {name:22s} {elapsed:8.1f} s wall with --jobs {jobs} ({elapsed * jobs / len(frames):.3f} core-s "
              f"per adaptation)" + (f"; {cpu:.1f} CPU-s of this process" if jobs == 1 else ""))
    agreement = same / len(pairs)
    needed = args.min_agreement if args.min_agreement is not None else AGREEMENT[torch.device(args.device).type != "cpu"]
    print(f"  speed-up {per_video / batch:.2f}x; same segments and labels on {same} of {len(pairs)} video-splits "
          f"({agreement:.1%}, needed {needed:.1%}), largest score difference on those {worst:.1e}")
    if agreement < needed:
        raise SystemExit(f"batched agreement {agreement:.1%} is below {needed:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("per-video")
    one.add_argument("--frames", type=int, default=6000)
    one.add_argument("--steps", type=int, default=60)
    one.add_argument("--repeat", type=int, default=5)
    one.add_argument("--batch", type=int, default=8, help="adaptations per batch of the batched line")
    full = sub.add_parser("setting")
    full.add_argument("--jobs", type=int, default=2)
    full.add_argument("--split", default="75_25")
    full.add_argument("--steps", type=int, default=60)
    full.add_argument("--cache", help="existing benchmark cache to reuse, or where to write and keep it")
    full.add_argument("--tmp", default=None, help="folder for the temporary cache (about 5 GB)")
    full.add_argument("--device", help="adapt batched on this device (cpu, cuda); default: video by video")
    many = sub.add_parser("batched")
    many.add_argument("--videos", type=int, default=32)
    many.add_argument("--device", default="cpu")
    many.add_argument("--jobs", type=int, default=1, help="processes of the video-by-video run")
    many.add_argument("--split", default="75_25")
    many.add_argument("--steps", type=int, default=60)
    many.add_argument("--tmp", default=None, help="folder for the temporary cache")
    many.add_argument("--min-agreement", type=float, help="fraction of video-splits that must agree (exit 1 below "
                      "it); default: 1 on the CPU, 0.98 on a GPU")
    single = sub.add_parser("one-video")
    single.add_argument("--device", default="cuda")
    single.add_argument("--frames", type=int, default=6000)
    single.add_argument("--steps", type=int, default=60)
    single.add_argument("--repeat", type=int, default=5)
    single.add_argument("--json-out", type=Path, help="the figures as JSON")
    write = sub.add_parser("cache")
    write.add_argument("--cache", required=True, help="where to write and keep it (reused when there whole)")
    write.add_argument("--videos", type=int, default=THUMOS_VIDEOS, help="its first VIDEOS videos only")
    args = parser.parse_args()
    if args.command == "per-video":
        per_video(args)
    elif args.command == "batched":
        batched(args)
    elif args.command == "one-video":
        one_video(args)
    elif args.command == "cache":
        ensure_bench_cache(args.cache, args.videos)
    else:
        with_bench_cache(args, lambda cache: time_setting(cache, args))


if __name__ == "__main__":
    main()
