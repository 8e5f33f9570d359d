#!/usr/bin/env bash
# The model, caption, adaptation and device-guard tests once per torch version, each in its own venv:
# that Python, that torch and torchvision from PyPI (the default CUDA builds, ~3.5 GB each), then
# `pip install -e '.[test]'`, which must keep that torch. Run it before widening torch's bound in
# setup.cfg (not part of .ci/run: it downloads gigabytes per version).
#
#   bash .ci/torch_compat.sh [PYTHON:TORCH:TORCHVISION ...]
#   e.g. bash .ci/torch_compat.sh 3.12:2.11.0:0.26.0
#   default: every torch minor version in setup.cfg's bounds, Pythons 3.10 to 3.12 in turn
#
# PYTHON is a version (3.12: python3.12 on PATH if it runs, else the newest pyenv 3.12.x) or a path.
# VENVS=DIR keeps each venv in DIR/py<P>-torch<T> and reuses it; else each is temporary and removed.
# pip's own settings apply: a find-links folder holding another build of that torch (a +cpu wheel, say)
# can be chosen over PyPI's, and then torchvision does not import (the version's line says so).
# Prints one line per version ("python 3.12.1 torch 2.11.0+cu130: 236 passed in 140 s, install 210 s")
# and exits 1 when any version failed.
set -uo pipefail
cd "$(dirname "$0")/.."
TESTS=(tests/test_models.py tests/test_tiny_coca.py tests/test_beam_search.py tests/test_captions.py
       tests/test_adapt_ops.py tests/test_losses.py tests/test_batched.py tests/test_localizer.py
       tests/test_freezad.py tests/test_device.py)
versions=("$@")
# keep equal to the bounds of torch in setup.cfg (torchvision: the release made with each torch)
[ ${#versions[@]} -gt 0 ] || versions=(3.10:2.8.0:0.23.0 3.11:2.9.1:0.24.1 3.10:2.10.0:0.25.0 3.12:2.11.0:0.26.0
                                     3.12:2.12.1:0.27.1 3.11:2.13.0:0.28.0 3.11:2.14.1:0.29.1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

find_python() {  # find_python 3.12|PATH: an interpreter of that version that runs
  local candidate
  case "$1" in */*) echo "$1"; return ;; esac
  for candidate in $(command -v "python$1") \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python 2>/dev/null | sort -V | tail -n 1); do
    "$candidate" -c "" 2> /dev/null && { echo "$candidate"; return; }
  done
}

pip_q() { "$@" -q --disable-pip-version-check 2>&1 | grep -v "is ignored: it is neither a file nor a directory"; }

summary=() status=0
for spec in "${versions[@]}"; do
  IFS=: read -r python torch vision <<< "$spec"
  interpreter=$(find_python "$python")
  if [ -z "$interpreter" ]; then
    summary+=("python $python torch $torch: FAILED, no such Python"); status=1; continue
  fi
  venv="${VENVS:+$VENVS/py$python-torch$torch}"
  venv="${venv:-$work/py$python-torch$torch}"
  echo "== python $python ($interpreter), torch $torch, torchvision $vision: $venv"
  start=$(date +%s)
  [ -x "$venv/bin/python" ] || "$interpreter" -m venv "$venv"
  py="$venv/bin/python"
  pip_q "$py" -m pip install "torch==$torch" "torchvision==$vision"
  if ! "$py" -c "import torchvision" > "$work/log" 2>&1; then  # e.g. a CPU torch beside a CUDA torchvision
    tail -n 3 "$work/log"
    summary+=("python $python torch $torch: FAILED, torchvision $vision does not import beside it"); status=1
    continue
  fi
  before=$("$py" -c "import torch; print(torch.__version__)")
  pip_q "$py" -m pip install -e '.[test]'
  after=$("$py" -c "import torch; print(torch.__version__)")
  installed=$(($(date +%s) - start))
  if [ "$before" != "$after" ]; then
    summary+=("python $python torch $before: FAILED, pip install -e .[test] replaced it with $after"); status=1
    continue
  fi
  start=$(date +%s)
  "$py" -m pytest -q -p no:cacheprovider -m "not slow" "${TESTS[@]}" 2>&1 | tee "$work/log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed)" "$work/log" | tail -n 1 | tr -d '=' | xargs)
  line="python $("$py" -c 'import platform; print(platform.python_version())') torch $after: ${counts:-no tests ran}"
  line="$line (tests $(($(date +%s) - start)) s, install $installed s)"
  [ "$rc" -eq 0 ] || { line="$line FAILED"; status=1; }
  echo "== $line"
  summary+=("$line")
  [ -n "${VENVS:-}" ] || rm -rf "$venv"
done
printf '%s\n' "== torch_compat" "${summary[@]}"
exit $status
