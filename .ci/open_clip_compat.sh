#!/usr/bin/env bash
# The model-loading and caption tests against the oldest and the newest open_clip_torch that setup.cfg
# allows, each in a fresh venv over this Python's packages (torch and the rest are shared, only
# open_clip differs). Usage: bash .ci/open_clip_compat.sh [VERSION...]   (default: 2.26.1 3.3.0)
# TORCH="torch==2.13.0+cpu torchvision==0.28.0" installs another torch into each venv as well.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.26.1 3.3.0)  # keep equal to the bounds in setup.cfg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for version in "${versions[@]}"; do
  echo "== open_clip_torch $version"
  "$PY" -m venv --system-site-packages "$work/$version"
  venv_py="$work/$version/bin/python"
  # shellcheck disable=SC2086  # TORCH is a list of requirements
  "$venv_py" -m pip install -q --disable-pip-version-check --no-deps "open_clip_torch==$version" ${TORCH:-}
  "$venv_py" -m pip install -q --disable-pip-version-check --no-deps -e .
  "$venv_py" -c "from importlib.metadata import version; import open_clip, t3al.extract
print('open_clip', version('open_clip_torch'), 'torch', version('torch'), 't3al from', t3al.extract.__file__)"
  "$venv_py" -m pytest -q -p no:cacheprovider -m "not slow" tests/test_models.py tests/test_beam_search.py tests/test_captions.py
done
