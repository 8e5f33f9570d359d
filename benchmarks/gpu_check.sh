#!/usr/bin/env bash
# The first GPU session's check: two commands of at most 5.5 minutes each on a fresh CUDA machine that has
# torch but maybe not the rest of t3al's packages (benchmarks/gpu_wheels.sh downloads those as wheels
# into .whl/, carried with the repository). Each step prints one verdict line.
#
#   benchmarks/gpu_check.sh stage1                 stage one on cuda (captions, features, extraction)
#   benchmarks/gpu_check.sh stage2 [--cache DIR]   stage two on cuda (one video, batched agreement, the two targets)
#   benchmarks/gpu_check.sh --smoke                both stages' code paths on the CPU, small sizes (~4 min idle)
#   (stage1 --smoke and stage2 --smoke run one of them on the CPU)
#
# Python: $PYTHON, else the repository's .venv, else python3. Wheels in .whl/ are installed with
# pip --target into a folder of /tmp put first on PYTHONPATH (reused by the next run while the same
# wheels are carried); t3al is imported from this checkout.
# What it leaves in $OUT (default runs/gpu_check), three files per stage, rewritten after every step:
#   <stage>.txt      the summary: each step's command, the end of its output, its verdict
#   <stage>.json     every step's figures, by step
#   <stage>.tar.gz   every step's whole output and figures
#
# steps of both stages:
#   environment     Python, torch, CUDA, the GPU, CPUs, load (torch alone is imported): fails at once,
#                   and ends the stage, when CUDA is absent
#   wheels, imports the carried wheels installed (see above), then every package the checks use, its
#                   version and folder; a missing one ends the stage
# stage1 steps:
#   captions_fp32   the project's caption generator == open_clip's generate, token for token, beam and
#                   greedy, fp32 with TF32 off (bench_captions.py --require-same); else the first differing
#                   step of each row and its log-probability margin are printed
#   captions_fp16, captions_bf16   feature frames/s, captions/s of both generators, peak GPU memory; half
#                   precision may break a near-tie another way, so its agreement is counted, not required
#   decode          ffmpeg decoding and normalisation onto the device (bench_extract.py --skip-end-to-end)
#   world, extract, extract_cpu, features   t3al-extract on 3 generated videos with the demo CoCa on the
#                   device and on the CPU; the device's cache must record fp16 (so it ran on CUDA under
#                   autocast), hold captions and no failures, and every frame's feature must be within
#                   cosine 0.999 of the CPU's
#   adapt_world     t3al-adapt on that cache with --jobs 2 --device: worker processes sharing the device
# stage2 steps:
#   bench_cache     (in the background) the 413-video THUMOS14-sized cache, ~7 GB, in --cache DIR (default
#                   /tmp/t3al-gpu-check-cache; --smoke: 4 of its videos, /tmp/t3al-gpu-check-smoke-cache),
#                   reused when whole: stage1 starts writing it, in a session of its own that outlives
#                   stage1's command, and stage2 waits for that writer (flock) or writes it itself
#   one_video       one THUMOS-sized video (N = 6,000, T = 60) adapted as a batch of one on the device,
#                   wall seconds, beside the CPU's one-thread fast path
#   adapt_batched, agreement   bench_adapt.py batched: 32 videos on every split, batched on the device
#                   against the CPU video by video; fails under 95 % of video-splits with the same
#                   segments and labels
#   adapt_setting, setting_target   bench_adapt.py setting (a THUMOS14-sized 75:25 setting, batched on
#                   the device, --jobs 4): target under 20 s
#   adapt_sweep, sweep_target   bench_sweep.py, Table 5 + 6 on that cache: target under 120 s
# Each stage stops at 330 s: a step gets what is left of it at most, and one that cannot run fails
# (--smoke: four times each step's time, 900 s a stage).
# Exit status: 0 when every step of the stage(s) passed, else 1 (see $OUT/<stage>.txt).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3
fi
OUT="${OUT:-$ROOT/runs/gpu_check}"
STAGES="" SMOKE=0 CACHE="" BUDGET=330
usage="usage: $0 stage1|stage2|--smoke [--smoke] [--cache DIR]"
while [ $# -gt 0 ]; do
  case "$1" in
    stage1|stage2) STAGES="$STAGES $1" ;;
    --smoke) SMOKE=1 ;;
    --cache) CACHE="$2"; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$STAGES" ]; then
  [ $SMOKE -eq 1 ] || { echo "$usage" >&2; exit 2; }
  STAGES="stage1 stage2"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
[ -n "$CACHE" ] || CACHE=/tmp/t3al-gpu-check-$([ $SMOKE -eq 1 ] && echo smoke-)cache
# The carried wheels and t3al (links to this checkout's folders: a venv's editable install may name
# another path) in one folder first on PYTHONPATH, kept for this checkout's next run on the machine.
SITE="${TMPDIR:-/tmp}/t3al-gpu-check-site-$(echo "$ROOT" | md5sum | cut -c1-8)"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

if [ $SMOKE -eq 1 ]; then
  DEVICE=cpu PRECISION=fp32 HALF="" ARCH=t3al-demo-coca IMAGES=4 REFERENCE=2 EXACT=2 SEQ=10 FEATURES=4
  THREADS="--threads 1" CAPTIONS=2 BATCHED="--videos 3 --steps 3" ONE="--frames 600 --steps 3 --repeat 1"
  BENCH_CACHE="--videos 4"  # the large cache's code path, on 4 of its videos
  AGREEMENT=1.0  # share of video-splits whose batched detections must equal video by video's: all on a CPU
  SLOW=4 BUDGET=900  # a CPU, maybe shared: four times each step's time, 15 minutes a stage
  export OMP_NUM_THREADS=1  # a shared CPU: one thread per process runs small ops far faster than two contending
else
  DEVICE=cuda PRECISION=fp16 HALF="fp16 bf16" ARCH=coca_ViT-L-14 IMAGES=128 REFERENCE=16 EXACT=8 SEQ=30 FEATURES=64
  THREADS="" CAPTIONS=10 BATCHED="--videos 32 --jobs 8" ONE="--frames 6000 --steps 60 --repeat 5" BENCH_CACHE="" SLOW=1
  AGREEMENT=0.95  # the same share on the GPU, whose kernels may round differently
fi
CLI='import sys; from t3al.extract.cli import main; sys.argv[0] = "t3al-extract"; main()'
ADAPT='import sys; from t3al.adapt.cli import main; sys.argv[0] = "t3al-adapt"; main()'
MERGE='import json, sys, pathlib; d = pathlib.Path(sys.argv[1])
print(json.dumps({p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}, indent=1))'

status=0
pack() {  # the stage's three files in $OUT, as they stand
  "$PY" -c "$MERGE" "$DIR" > "$OUT/$STAGE.json" 2> /dev/null
  tar -czf "$OUT/$STAGE.tar.gz" -C "$WORK/stages" "$STAGE"
}
say() { echo "$*" | tee -a "$OUT/$STAGE.txt"; }
seconds_for() {  # seconds_for SECONDS: a step's limit within what is left of the stage's budget
  local seconds=$(($1 * SLOW)) left=$((DEADLINE - $(date +%s)))
  echo $((seconds < left ? seconds : left))
}
report() {  # report NAME RC: the end of a step's output and its verdict, into the summary
  grep -v "^WARNING:root:No pretrained" "$DIR/$1.txt" | tail -n 12 | tee -a "$OUT/$STAGE.txt"
  [ "$2" -eq 0 ] || { say "!! $1 failed (exit $2$([ "$2" -eq 124 ] && echo ', out of time'))"; status=1; }
  pack
  return "$2"
}
step() {  # step NAME SECONDS COMMAND...: run within the stage's budget, keep its output, note a failure
  local name=$1 seconds; seconds=$(seconds_for "$2"); shift 2
  if [ "$seconds" -lt 5 ]; then
    say "!! $name not run: the stage's ${BUDGET} s are spent"; status=1; return 1
  fi
  say "== $name ($(date +%T), at most ${seconds} s): $*"
  timeout "$seconds" "$@" > "$DIR/$name.txt" 2>&1
  report "$name" $?
}
BACKGROUND=""
background() {  # background NAME SECONDS COMMAND...: a step that runs while the next ones do; finish NAME waits
  local name=$1 seconds; seconds=$(seconds_for "$2"); shift 2
  say "== $name ($(date +%T), in the background, at most ${seconds} s): $*"
  timeout "$seconds" "$@" > "$DIR/$name.txt" 2>&1 &
  BACKGROUND=$!
}
finish() {
  say "== $1 ($(date +%T)): waiting for it"
  wait "$BACKGROUND"
  report "$1" $?
}
install_site() {  # the carried wheels into $SITE (unless the same ones are there), then t3al as links
  local wheels; wheels=$(compgen -G "$ROOT/.whl/*.whl" | sort)
  if [ -z "$wheels" ]; then
    echo "no wheels in $ROOT/.whl: the installed packages alone"
  elif [ "$(cat "$SITE/.wheels" 2> /dev/null)" = "$wheels" ]; then
    echo "the $(echo "$wheels" | wc -l) wheels of $ROOT/.whl are installed in $SITE already"
  else
    rm -rf "$SITE"
    # shellcheck disable=SC2086  # one argument per wheel
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" $wheels || return 1
    echo "$wheels" > "$SITE/.wheels"
    echo "installed $(echo "$wheels" | wc -l) wheels from $ROOT/.whl into $SITE"
  fi
  mkdir -p "$SITE/t3al"
  for folder in cache adapt evaluate extract manifests demo localize; do ln -sfn "$ROOT/$folder" "$SITE/t3al/$folder"; done
  # and its metadata, as an install leaves it: the results record t3al's version
  local version; version=$(sed -n 's/^version *= *//p' "$ROOT/setup.cfg")
  rm -rf "$SITE"/t3al-*.dist-info && mkdir "$SITE/t3al-$version.dist-info"
  printf 'Metadata-Version: 2.1\nName: t3al\nVersion: %s\n' "$version" > "$SITE/t3al-$version.dist-info/METADATA"
}
machine() {  # environment, then the wheels and the imports: a stage's first steps
  step environment 60 "$PY" benchmarks/gpu_checks.py environment --device "$DEVICE" --json-out "$DIR/environment.json" \
    || return 1
  say "== wheels ($(date +%T)): pip install --no-index --no-deps --target $SITE .whl/*.whl"
  install_site > "$DIR/wheels.txt" 2>&1
  report wheels $? || return 1
  step imports 60 "$PY" benchmarks/gpu_checks.py imports --json-out "$DIR/imports.json"
}
LOCK=() && command -v flock > /dev/null && LOCK=(flock "$CACHE.lock")  # one writer of the cache at a time
start_bench_cache() {  # stage2's cache, written while stage1 runs, by a process that outlives stage1's command
  command -v setsid > /dev/null && [ ${#LOCK[@]} -gt 0 ] || return 0
  say "== bench_cache ($(date +%T)): for stage2, written meanwhile into $CACHE in a session of its own (log $CACHE.log)"
  # shellcheck disable=SC2086  # BENCH_CACHE is a list of options
  setsid "${LOCK[@]}" "$PY" benchmarks/bench_adapt.py cache --cache "$CACHE" $BENCH_CACHE > "$CACHE.log" 2>&1 < /dev/null &
}

stage1() {
  machine || return 1
  start_bench_cache
  command -v nvidia-smi > /dev/null && nvidia-smi > "$DIR/nvidia-smi.txt" 2>&1
  step captions_fp32 60 "$PY" benchmarks/bench_captions.py --arch "$ARCH" --device "$DEVICE" --precision fp32 \
    --images "$EXACT" --reference-images "$EXACT" --seq-len "$SEQ" --feature-batch "$FEATURES" --require-same \
    --json-out "$DIR/captions_fp32.json" $THREADS
  for precision in $HALF; do
    step "captions_$precision" 45 "$PY" benchmarks/bench_captions.py --arch "$ARCH" --device "$DEVICE" \
      --precision "$precision" --images "$IMAGES" --reference-images "$REFERENCE" --seq-len "$SEQ" \
      --feature-batch "$FEATURES" --json-out "$DIR/captions_$precision.json" $THREADS
  done
  step world 30 "$PY" -c "
from pathlib import Path
from t3al.demo.world import generate_world
generate_world(Path('$WORK/world'), seed=11, n_videos=3, n_classes=3, durations=(6.0, 6.0))" || return 1
  step decode 20 "$PY" benchmarks/bench_extract.py "$WORK/world/videos" --device "$DEVICE" --skip-end-to-end \
    --json-out "$DIR/decode.json"
  local model=(--model t3al-demo-coca --pretrained "$ROOT/demo/t3al-demo-coca.pt" --manifest "$WORK/world/manifest.json")
  step extract 30 "$PY" -c "$CLI" run "$WORK/world/videos" "$WORK/cache" "${model[@]}" --device "$DEVICE" \
    --caption-fps "$CAPTIONS"
  step extract_cpu 30 "$PY" -c "$CLI" run "$WORK/world/videos" "$WORK/cache_cpu" "${model[@]}" --device cpu \
    --caption-fps 0
  step features 15 "$PY" benchmarks/gpu_checks.py features "$WORK/cache" "$WORK/cache_cpu" --precision "$PRECISION" \
    --min-cosine 0.999 --json-out "$DIR/features.json"
  step adapt_world 30 "$PY" -c "$ADAPT" "$WORK/cache" --split 75_25 --split-index 0 --jobs 2 --device "$DEVICE" \
    --out "$WORK/adapt_world"
}

stage2() {
  machine || return 1
  background bench_cache 240 "${LOCK[@]}" "$PY" benchmarks/bench_adapt.py cache --cache "$CACHE" $BENCH_CACHE
  step one_video 45 "$PY" benchmarks/bench_adapt.py one-video --device "$DEVICE" $ONE --json-out "$DIR/one_video.json"
  step adapt_batched 90 "$PY" benchmarks/bench_adapt.py batched --device "$DEVICE" --tmp "$WORK" $BATCHED \
    --min-agreement "$AGREEMENT"
  step agreement 15 "$PY" benchmarks/gpu_checks.py agreement "$DIR/adapt_batched.txt" --min-share "$AGREEMENT" \
    --json-out "$DIR/agreement.json"
  finish bench_cache || return 1
  [ "$DEVICE" = cuda ] || return 0  # the targets are for the GPU only: a CPU takes minutes over the setting
  step adapt_setting 60 "$PY" benchmarks/bench_adapt.py setting --device cuda --jobs 4 --cache "$CACHE" &&
    step setting_target 15 "$PY" benchmarks/gpu_checks.py target "$DIR/adapt_setting.txt" --what setting \
      --seconds 20 --json-out "$DIR/setting_target.json"
  step adapt_sweep 130 "$PY" benchmarks/bench_sweep.py --device cuda --jobs 4 --cache "$CACHE" &&
    step sweep_target 15 "$PY" benchmarks/gpu_checks.py target "$DIR/adapt_sweep.txt" --what sweep \
      --seconds 120 --json-out "$DIR/sweep_target.json"
}

mkdir -p "$OUT"
for STAGE in $STAGES; do
  DIR="$WORK/stages/$STAGE"
  mkdir -p "$DIR"
  rm -f "$OUT/$STAGE".*
  DEADLINE=$(($(date +%s) + BUDGET))
  say "== $STAGE on $DEVICE with $PY, $(uptime)"
  before=$status status=0
  "$STAGE"
  say "gpu_check: $STAGE $([ $status -eq 0 ] && echo all steps passed || echo some steps FAILED)"
  status=$((status | before))
done
echo "gpu_check:$STAGES $([ $status -eq 0 ] && echo all steps passed || echo some steps FAILED), see $OUT/*.txt"
exit $status
