#!/usr/bin/env bash
# The model-loading and caption tests against the oldest and the newest open_clip_torch that setup.cfg
# allows, each in a fresh venv over this Python's packages (torch and the rest are shared, only
# open_clip differs). Usage: bash .ci/open_clip_compat.sh [VERSION...]   (default: 2.23.0 3.3.0)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.23.0 3.3.0)  # keep equal to the bounds in setup.cfg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for version in "${versions[@]}"; do
  echo "== open_clip_torch $version"
  "$PY" -m venv --system-site-packages "$work/$version"
  venv_py="$work/$version/bin/python"
  "$venv_py" -m pip install -q --disable-pip-version-check --no-deps "open_clip_torch==$version"
  "$venv_py" -m pip install -q --disable-pip-version-check --no-deps -e .
  "$venv_py" -c "from importlib.metadata import version; import open_clip, t3al.extract
print('open_clip', version('open_clip_torch'), 't3al from', t3al.extract.__file__)"
  "$venv_py" -m pytest -q -p no:cacheprovider -m "not slow" tests/test_models.py tests/test_decoding.py tests/test_captions.py
done
