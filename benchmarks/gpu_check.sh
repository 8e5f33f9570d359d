#!/usr/bin/env bash
# The first GPU session's check: two commands of at most 5 minutes each on a fresh CUDA machine with
# only the repo and its venv. Each step prints one verdict line; figures go to $OUT/<stage>/*.json.
#
#   benchmarks/gpu_check.sh stage1                 stage one on cuda (captions, features, extraction)
#   benchmarks/gpu_check.sh stage2 [--cache DIR]   stage two on cuda (batched agreement, the two targets)
#   benchmarks/gpu_check.sh --smoke                both stages' code paths on the CPU, small sizes (~4 min idle)
#   (stage1 --smoke and stage2 --smoke run one of them on the CPU)
#
# stage1 steps:
#   environment     versions and the device; fails at once, and ends the stage, when CUDA is absent
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
#   environment
#   adapt_batched, agreement   bench_adapt.py batched: 32 videos on every split, batched on the device
#                   against the CPU video by video; fails under 95 % of video-splits with the same
#                   segments and labels
#   adapt_setting, setting_target   bench_adapt.py setting (a THUMOS14-sized 75:25 setting, batched on
#                   the device, --jobs 4): target under 20 s (the ~7 GB cache it writes first, ~1-2 min,
#                   is kept in --cache DIR, default /tmp/t3al-gpu-check-cache, and reused by later runs)
#   adapt_sweep, sweep_target   bench_sweep.py, Table 5 + 6 on that cache: target under 120 s
# Each stage stops at 290 s: a step gets what is left of it at most, and one that cannot run fails
# (--smoke: four times each step's time, 900 s a stage).
# Exit status: 0 when every step of the stage(s) passed, else 1 (see $OUT/<stage>/log.txt).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$ROOT/runs/gpu_check}"
STAGES="" SMOKE=0 CACHE="/tmp/t3al-gpu-check-cache" BUDGET=290
while [ $# -gt 0 ]; do
  case "$1" in
    stage1|stage2) STAGES="$STAGES $1" ;;
    --smoke) SMOKE=1 ;;
    --cache) CACHE="$2"; shift ;;
    *) echo "usage: $0 stage1|stage2|--smoke [--smoke] [--cache DIR]" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$STAGES" ]; then
  [ $SMOKE -eq 1 ] || { echo "usage: $0 stage1|stage2|--smoke [--smoke] [--cache DIR]" >&2; exit 2; }
  STAGES="stage1 stage2"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# import t3al from this checkout wherever it lies (the venv's editable install may name another path)
mkdir -p "$WORK/shim/t3al"
for folder in cache adapt evaluate extract manifests demo; do ln -s "$ROOT/$folder" "$WORK/shim/t3al/$folder"; done
export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"

if [ $SMOKE -eq 1 ]; then
  DEVICE=cpu PRECISION=fp32 HALF="" ARCH=t3al-demo-coca IMAGES=4 REFERENCE=2 EXACT=2 SEQ=10 FEATURES=4
  THREADS="--threads 1" CAPTIONS=2 BATCHED="--videos 3 --steps 3"
  AGREEMENT=1.0  # share of video-splits whose batched detections must equal video by video's: all on a CPU
  SLOW=4 BUDGET=900  # a CPU, maybe shared: four times each step's time, 15 minutes a stage
  export OMP_NUM_THREADS=1  # a shared CPU: one thread per process runs small ops far faster than two contending
else
  DEVICE=cuda PRECISION=fp16 HALF="fp16 bf16" ARCH=coca_ViT-L-14 IMAGES=128 REFERENCE=16 EXACT=8 SEQ=30 FEATURES=64
  THREADS="" CAPTIONS=10 BATCHED="--videos 32 --jobs 8" SLOW=1
  AGREEMENT=0.95  # the same share on the GPU, whose kernels may round differently
fi
CLI='import sys; from t3al.extract.cli import main; sys.argv[0] = "t3al-extract"; main()'
ADAPT='import sys; from t3al.adapt.cli import main; sys.argv[0] = "t3al-adapt"; main()'

status=0
step() {  # step NAME SECONDS COMMAND...: run within the stage's budget, keep its output, note a failure
  local name=$1 seconds=$(($2 * SLOW)); shift 2
  local left=$((DEADLINE - $(date +%s)))
  [ "$seconds" -gt "$left" ] && seconds=$left
  if [ "$seconds" -lt 5 ]; then
    echo "!! $name not run: the stage's ${BUDGET} s are spent" | tee -a "$DIR/log.txt"; status=1; return 1
  fi
  echo "== $name ($(date +%T), at most ${seconds} s): $*" | tee -a "$DIR/log.txt"
  timeout "$seconds" "$@" > "$DIR/$name.txt" 2>&1
  local rc=$?
  grep -v "^WARNING:root:No pretrained" "$DIR/$name.txt" | tail -n 12
  if [ $rc -ne 0 ]; then
    echo "!! $name failed (exit $rc$([ $rc -eq 124 ] && echo ', out of time'))" | tee -a "$DIR/log.txt"; status=1
  fi
  return $rc
}

stage1() {
  step environment 60 "$PY" benchmarks/gpu_checks.py environment --device "$DEVICE" --json-out "$DIR/environment.json" \
    || return 1
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
  step environment 60 "$PY" benchmarks/gpu_checks.py environment --device "$DEVICE" --json-out "$DIR/environment.json" \
    || return 1
  step adapt_batched 90 "$PY" benchmarks/bench_adapt.py batched --device "$DEVICE" --tmp "$WORK" $BATCHED \
    --min-agreement "$AGREEMENT"
  step agreement 15 "$PY" benchmarks/gpu_checks.py agreement "$DIR/adapt_batched.txt" --min-share "$AGREEMENT" \
    --json-out "$DIR/agreement.json"
  [ "$DEVICE" = cuda ] || return 0  # the THUMOS14-sized cache and its targets are for the GPU only
  step adapt_setting 150 "$PY" benchmarks/bench_adapt.py setting --device cuda --jobs 4 --cache "$CACHE" &&
    step setting_target 15 "$PY" benchmarks/gpu_checks.py target "$DIR/adapt_setting.txt" --what setting \
      --seconds 20 --json-out "$DIR/setting_target.json"
  step adapt_sweep 130 "$PY" benchmarks/bench_sweep.py --device cuda --jobs 4 --cache "$CACHE" &&
    step sweep_target 15 "$PY" benchmarks/gpu_checks.py target "$DIR/adapt_sweep.txt" --what sweep \
      --seconds 120 --json-out "$DIR/sweep_target.json"
}

for stage in $STAGES; do
  DIR="$OUT/$stage"
  mkdir -p "$DIR"
  DEADLINE=$(($(date +%s) + BUDGET))
  echo "== $stage on $DEVICE, $(uptime)" | tee -a "$DIR/log.txt"
  "$stage"
done
echo "gpu_check:$STAGES $([ $status -eq 0 ] && echo all steps passed || echo some steps FAILED, see $OUT/*/log.txt)"
exit $status
