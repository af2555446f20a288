#!/usr/bin/env bash
# CI, second environment: the oldest torch that pyproject.toml declares ("torch>=X"), so that both ends of
# the claimed range are tested (.ci/run tests the newest torch pip gives). A throwaway venv in a temp dir,
# exactly that torch, a C++-only build (AMGP_CUDA=0) of a copy of this tree (an in-place build here would
# replace the main environment's extension), and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

floor=$(sed -n 's/.*"torch>=\([0-9][0-9.]*\)".*/\1/p' pyproject.toml | sort -u)
if [ -z "$floor" ] || [ "$(printf '%s\n' "$floor" | wc -l)" -ne 1 ]; then
  echo ".ci/floor.sh: expected one torch floor (\"torch>=X\") in pyproject.toml, found: ${floor:-none}" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/amgp-floor.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git ls-files --cached --others --exclude-standard -z | tar --null -T - -cf - | tar -x -C "$work/src"
python -m venv "$work/venv"
. "$work/venv/bin/activate"
export TORCHINDUCTOR_CACHE_DIR="$work/inductor"  # compiled graphs of another torch or tree are not reused
cd "$work/src"

started=$SECONDS
echo "+ torch==$floor, in a new venv"
pip install --progress-bar off "torch==$floor" ninja pybind11 setuptools wheel
installed=$SECONDS
AMGP_CUDA=0 pip install --progress-bar off --no-build-isolation -e ".[test]"
built=$SECONDS
python - "$floor" <<'PY'
import sys, torch, amgp_kernels
print("torch", torch.__version__, "build_info:", amgp_kernels.build_info())
floor = [int(part) for part in sys.argv[1].split(".")]
have = [int(part) for part in torch.__version__.split("+")[0].split(".")]
if have[:len(floor)] != floor or any(have[len(floor):]):
    sys.exit(f"expected torch {sys.argv[1]}, got {torch.__version__}")
PY
python -m pytest -q -p no:cacheprovider
echo "floor torch $floor: install $((installed - started)) s, build $((built - installed)) s, tests $((SECONDS - built)) s"
