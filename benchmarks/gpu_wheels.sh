#!/usr/bin/env bash
# The wheels that a GPU machine's image lacks for benchmarks/gpu_check.sh, downloaded for CPython 3.12 on
# manylinux x86_64 into .whl/ (ignored by git; the run carries it and gpu_check.sh installs it with pip
# --target), then a check that they fit the carry limit beside the files that travel with them (tracked
# and untracked-not-ignored files). Any other wheel in .whl/ is removed first: one version of each.
#
#   benchmarks/gpu_wheels.sh          (needs pip and PyPI here; nothing is installed)
#
# The image it is for: Python 3.12.3 with torch 2.11.0+cu130, torchvision 0.26.0, numpy 2.5,
# transformers 5.17 (tokenizers 0.23, huggingface_hub 1.x), timm, regex, safetensors, h5py,
# scikit-learn, joblib, click, tqdm, matplotlib, jinja2 and opencv-python-headless.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
LIMIT=$((64 * 1024 * 1024))  # what one run carries: the working tree that travels plus .whl
WHEELS=(
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.7.0  # open_clip, and what its tokenizer imports
  ffmpeg-python==0.2.0 future==1.0.0                 # decoding
  imageio-ffmpeg==0.6.0                              # the ffmpeg binary (the wheels of 0.7 and later are 68 MB)
  # the exact-caption steps' reference, open_clip's CoCa.generate, needs transformers<4.56, whose import
  # requires tokenizers<0.22 and huggingface_hub<1.0
  transformers==4.55.4 tokenizers==0.21.4 huggingface_hub==0.36.2
)
git check-ignore -q .whl/x.whl || { echo ".whl/ is not ignored by git: it would travel twice" >&2; exit 1; }
mkdir -p .whl
rm -f .whl/*.whl
for wheel in "${WHEELS[@]}"; do
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$wheel" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
done
count=$(ls .whl/*.whl | wc -l)
[ "$count" -eq ${#WHEELS[@]} ] || { echo "expected ${#WHEELS[@]} wheels in .whl, found $count" >&2; exit 1; }
wheels=$(du -cb .whl/*.whl | tail -n 1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cbD 2> /dev/null | awk '/\ttotal$/ {s += $1} END {print s}')
total=$((wheels + tree))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "$count wheels, $(mib "$wheels"); the files that travel, $(mib "$tree"); together $(mib "$total") of $(mib "$LIMIT")"
[ "$total" -le "$LIMIT" ] || { echo "over the carry limit by $(mib $((total - LIMIT)))" >&2; exit 1; }
echo "carry: [\".whl\"]"
