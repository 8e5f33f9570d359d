#!/usr/bin/env bash
# Both stages on CUDA, once, in a few minutes (no GPU has run it yet). Needs only the repo and its venv.
#
#   benchmarks/gpu_check.sh            CUDA: real-size coca_ViT-L-14, random weights
#   benchmarks/gpu_check.sh --smoke    the same code paths on the CPU with the tiny demo CoCa (~3-5 min)
#
# Steps (each bounded by `timeout`, each one's output in $OUT/<step>.txt, JSON rows beside it):
#   exact_fp32   project generator == open_clip's generate token for token, beam and greedy, fp32 on the
#                device (fails the script if not). fp16/bf16 beam search may legitimately pick another
#                candidate where two scores tie within half-precision rounding, so half precision is
#                measured and its agreement counted (same_rows), not required.
#   fp16, bf16   feature frames/s, captions/s of open_clip's generate and the project's generator (both
#                decodings, same images, same run), the captions' share of stage one at 10 captions/s,
#                peak GPU memory.
#   extract      t3al-extract end to end on a small generated world with the demo CoCa on the device
#                (decode, normalise on the device, features, captions, cache write).
#   adapt_batched  stage two batched on the device against the CPU's video-by-video path: the
#                video-splits whose detections agree, and both timings (bench_adapt.py batched).
#   adapt_setting  a THUMOS14-sized 75:25 setting batched on the device (target: under 20 s), then
#   adapt_sweep    the Table 5 + 6 sweep on the same cache (target: under 2 minutes); CUDA only, last,
#                since the ~5 GB benchmark cache takes a while to write.
# Output: $OUT (default runs/gpu_check); exit status 1 when a step failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$ROOT/runs/gpu_check}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# import t3al from this checkout wherever it lies (the venv's editable install may name another path)
mkdir -p "$WORK/shim/t3al"
for folder in cache adapt evaluate extract manifests demo; do ln -s "$ROOT/$folder" "$WORK/shim/t3al/$folder"; done
export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = "--smoke" ]; then
  DEVICE=cpu ARCH=t3al-demo-coca HALF="fp32" IMAGES=4 REFERENCE=2 EXACT=2 SEQ=10 FEATURES=4 EXTRA="--threads 1" LIMIT=600 CAPTIONS=2
  ADAPT="--videos 3 --steps 3"
  export OMP_NUM_THREADS=1  # a shared CPU: one thread per process runs small ops far faster than two contending
else
  DEVICE=cuda ARCH=coca_ViT-L-14 HALF="fp16 bf16" IMAGES=128 REFERENCE=32 EXACT=8 SEQ=30 FEATURES=64 EXTRA="" LIMIT=150 CAPTIONS=10
  ADAPT="--videos 64 --jobs 8"
fi
status=0
step() {  # step NAME SECONDS COMMAND...: run, keep its output, note a failure and go on
  local name=$1 seconds=$2; shift 2
  echo "== $name ($(date +%T)): $*" | tee -a "$OUT/log.txt"
  timeout "$seconds" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  grep -v "^WARNING:root:No pretrained" "$OUT/$name.txt" | tail -n 20
  if [ $rc -ne 0 ]; then echo "!! $name failed (exit $rc)" | tee -a "$OUT/log.txt"; status=1; fi
}

step environment 180 "$PY" -c "
import torch, open_clip, transformers
print('torch', torch.__version__, 'open_clip', open_clip.__version__, 'transformers', transformers.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')
import t3al.extract.captions as c; print('t3al from', c.__file__)"
command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

step exact_fp32 "$LIMIT" "$PY" -m t3al.extract.bench_captions --arch "$ARCH" --device "$DEVICE" --precision fp32 \
  --images "$EXACT" --reference-images "$EXACT" --seq-len "$SEQ" --feature-batch "$FEATURES" --require-same --json-out "$OUT/exact_fp32.json" $EXTRA
for precision in $HALF; do
  step "$precision" "$LIMIT" "$PY" -m t3al.extract.bench_captions --arch "$ARCH" --device "$DEVICE" \
    --precision "$precision" --images "$IMAGES" --reference-images "$REFERENCE" --seq-len "$SEQ" --feature-batch "$FEATURES" \
    --json-out "$OUT/$precision.json" $EXTRA
done

step world "$LIMIT" "$PY" -c "
from pathlib import Path
from t3al.demo.world import generate_world
generate_world(Path('$WORK/world'), seed=11, n_videos=3, n_classes=3, durations=(6.0, 8.0))"
step extract "$LIMIT" "$PY" -c "
import sys
from t3al.extract.cli import main
sys.argv[0] = 't3al-extract'
main()" run "$WORK/world/videos" "$WORK/cache" --model t3al-demo-coca --pretrained "$ROOT/demo/t3al-demo-coca.pt" \
  --device "$DEVICE" --caption-fps "$CAPTIONS" --classes BallBounce,SquareSpin
step cache_check 180 "$PY" -c "
from t3al.cache import CacheReader
reader = CacheReader('$WORK/cache')
records = list(reader.videos())
assert len(records) == 3 and not reader.failures(), (len(records), reader.failures())
for r in records:
    print(r.video_id, r.features.shape, len(r.caption_texts), 'captions, e.g.', repr(r.caption_texts[len(r.caption_texts) // 2]))
    assert r.features.shape[0] == len(r.timestamps) and len(r.caption_texts) > 0
print('cache.json captions:', reader.info.captions)"
step adapt_batched "$LIMIT" "$PY" benchmarks/bench_adapt.py batched --device "$DEVICE" --tmp "$WORK" $ADAPT
if [ "$DEVICE" = cuda ]; then
  step adapt_setting 300 "$PY" benchmarks/bench_adapt.py setting --device cuda --jobs 4 --cache "$WORK/bench-cache"
  step adapt_sweep 300 "$PY" benchmarks/bench_sweep.py --device cuda --jobs 4 --cache "$WORK/bench-cache"
fi
echo "gpu_check: $([ $status -eq 0 ] && echo all steps passed || echo some steps FAILED, see $OUT/log.txt)" | tee -a "$OUT/log.txt"
exit $status
