#!/usr/bin/env bash
# TorchRec tests in a second environment with the pinned working set (torch 2.14 + fbgemm-gpu-cpu 1.9 +
# torchrec 1.9): the main environment's torch is newer than any fbgemm build. Creates a fresh venv in a
# temporary folder, runs the README's install line for it (the fenced block after the "ci: torchrec
# command" marker) on a copy of the working tree (so the main environment's in-place build is left
# alone), builds amgp there with AMGP_CUDA=0, and runs the TorchRec tests. Removes everything afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

command=$(awk '/<!-- ci: torchrec command -->/ {found=1; next}
               found && /^```/ {if (inside) exit; inside=1; next}
               inside {print}' README.md)
if [ -z "$command" ]; then
  echo ".ci/torchrec.sh: no install command found after '<!-- ci: torchrec command -->' in README.md" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/amgp-torchrec.XXXXXX")
trap 'rm -rf "$work"' EXIT
git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work"
"${PYTHON:-python}" -m venv "$work/venv"
export PATH="$work/venv/bin:$PATH" AMGP_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}"
cd "$work"
echo "+ $command"
bash -euo pipefail -c "$command"
# The tests skip without torchrec: make sure this environment really has it, and the C++ backend.
python -c "import amgp.torchrec, amgp_kernels; assert 'cpu' in amgp_kernels.build_info()['compiled_backends']"
echo ".ci/torchrec.sh: environment ready after $((SECONDS - started)) s"
python -m pytest -q -p no:cacheprovider tests/test_torchrec.py
echo ".ci/torchrec.sh: done in $((SECONDS - started)) s"
