"""Mutation testing before a release (not in CI: too slow for 2 cores): mutmut mutates one module at a time and
runs only the test files tests/mutation/modules.py maps it to; prints killed / survived per module and every
survivor that tests/mutation/equivalent.py does not list as reviewed-equivalent, with its diff.

    python tests/mutation/run.py --install            # once: mutmut into .mutation-tools/ (or pip install .[mutation])
    nice python tests/mutation/run.py training        # the training-side modules; or: kernels, other, all
    nice python tests/mutation/run.py amgp/meter.py   # one module

Each module is mutated in a scratch copy, .mutation-work/<module>/ (amgp and amgp_kernels at its top, so module
names are the import names; the compiled extension is copied along), which is left there for `mutmut show` /
`mutmut browse`. The summary of the last run of each module is kept in .mutation-work/summary.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOOLS = ROOT / ".mutation-tools"
WORK = ROOT / ".mutation-work"
MUTMUT = "mutmut==3.8.1"
sys.path.insert(0, str(HERE))

from equivalent import EQUIVALENT, NEEDS_GPU  # noqa: E402
from modules import CHILD_PROCESS_TESTS, GROUPS, MODULES  # noqa: E402

# Runs inside a module's scratch copy: mutmut's verdict for every mutant, and the diff of those not killed.
_COLLECT = """
import json, sys
from pathlib import Path
from mutmut.__main__ import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
data = SourceFileMutationData(path=Path(sys.argv[1]))
data.load()
out = {}
for name, code in data.exit_code_by_key.items():
    status = status_by_exit_code[code]
    out[name] = [status, "" if status == "killed" else get_diff_for_mutant(name, path=data.path)]
print(json.dumps(out))
"""

# Runs mutmut with its own copy first on the path when installed with --install, the venv's pytest otherwise.
_LAUNCH = "import sys; sys.path.append({tools!r}); from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; cli()"


def mutmut_command(*args):
    return [sys.executable, "-c", _LAUNCH.format(tools=str(TOOLS)), *args]


def config_text(module, tests):
    # torch.compile(fullgraph=True) cannot trace through mutmut's trampolines: those tests are left out.
    selection = ", ".join(json.dumps(f"tests/{name}") for name in tests)
    return (f"[tool.mutmut]\nsource_paths = [\"amgp/\", \"amgp_kernels/\"]\nonly_mutate = [{json.dumps(module)}]\n"
            f"pytest_add_cli_args = [\"-p\", \"no:cacheprovider\", \"-q\", \"-k\", \"not torch_compile\"]\n"
            f"pytest_add_cli_args_test_selection = [{selection}]\nuse_git_change_detection = false\n")


def prepare(module, tests):
    """A fresh scratch copy for `module`: amgp, amgp_kernels (with the compiled extension), tests, config."""
    work = WORK / module.replace("/", "_").removesuffix(".py")
    shutil.rmtree(work, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "python_api" / "amgp", work / "amgp", ignore=ignore)
    shutil.copytree(ROOT / "amgp_kernels", work / "amgp_kernels", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "mutation"))
    (work / "pyproject.toml").write_text(config_text(module, tests))
    # Present before mutmut starts: a PYTHONPATH folder missing at startup is never searched again.
    (work / "mutants").mkdir()
    return work


def run_module(module, tests, max_children):
    work = prepare(module, tests)
    env = {**os.environ, "PYTHONPATH": str(work / "mutants"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(work / "run.log", "w") as log:
        code = subprocess.call(mutmut_command("run", "--max-children", str(max_children)), cwd=work, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        tail = (work / "run.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mutmut failed on {module} (exit {code}); see {work / 'run.log'}:\n{tail}")
    collected = subprocess.run([sys.executable, "-c", f"import sys; sys.path.append({str(TOOLS)!r})\n{_COLLECT}",
                                module], cwd=work, env=env, capture_output=True, text=True, check=True)
    verdicts = json.loads(collected.stdout)
    if module in CHILD_PROCESS_TESTS:
        verdicts = rerun_in_child_processes(work, env, verdicts, CHILD_PROCESS_TESTS[module], max_children)
    return verdicts


_PYTEST = "import sys; sys.path.append({tools!r}); import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def rerun_in_child_processes(work, env, verdicts, tests, max_children):
    """Judge again the mutants mutmut found no test for or saw survive (their function may be called in-process
    by one test and in child processes by another) by running `tests` with MUTANT_UNDER_TEST set, which the
    tests' child processes inherit: a failing run kills the mutant."""
    untested = [name for name, (status, _) in verdicts.items() if status in ("no tests", "survived")]
    args = ["-x", "-q", "-p", "no:cacheprovider", *(f"tests/{name}" for name in tests)]

    def judge(name):
        try:
            code = subprocess.call([sys.executable, "-c", _PYTEST.format(tools=str(TOOLS)), *args], cwd=work / "mutants",
                                   env={**env, "MUTANT_UNDER_TEST": name}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=600)
        except subprocess.TimeoutExpired:
            return name, "timeout"
        return name, "survived" if code == 0 else "killed"

    with ThreadPoolExecutor(max_children) as pool:
        for name, status in pool.map(judge, untested):
            verdicts[name] = [status, verdicts[name][1]]
    return verdicts


def added_lines(diff):
    """The mutated code of a diff (its '+' lines), which an equivalence entry must still match."""
    return " / ".join(line[1:].strip() for line in diff.splitlines()
                      if line.startswith("+") and not line.startswith("+++"))


def classify(verdicts):
    """{status: [names]} with reviewed survivors moved to "equivalent" or "gpu-only" (stale entries reported)."""
    counts, unreviewed, stale = {}, [], []
    for name, (status, diff) in sorted(verdicts.items()):
        for reviewed, new_status in ((EQUIVALENT, "equivalent"), (NEEDS_GPU, "gpu-only")):
            if status == "survived" and name in reviewed:
                if reviewed[name][0] == added_lines(diff):
                    status = new_status
                else:
                    stale.append(name)
        counts.setdefault(status, []).append(name)
        if status not in ("killed", "equivalent", "gpu-only"):
            unreviewed.append((name, status, diff))
    return counts, unreviewed, stale


def score(counts):
    """Detected among the mutants this machine can judge (all but the equivalent and the GPU-only ones):
    killed, or timed out (the mutant made a test hang: caught, though slowly)."""
    killed = len(counts.get("killed", [])) + len(counts.get("timeout", []))
    total = sum(len(v) for k, v in counts.items() if k not in ("equivalent", "gpu-only"))
    return killed / total if total else 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["training"],
                        help=f"groups ({', '.join(GROUPS)}) or module paths from tests/mutation/modules.py")
    parser.add_argument("--install", action="store_true", help=f"pip install {MUTMUT} into .mutation-tools/ and stop")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel (default 2)")
    args = parser.parse_args(argv)
    if args.install:
        return subprocess.call([sys.executable, "-m", "pip", "install", "--target", str(TOOLS), MUTMUT])
    if args.max_children < 1:
        parser.error(f"--max-children must be at least 1, got {args.max_children}")
    modules = []
    for target in args.targets:
        if target not in GROUPS and target not in MODULES:
            parser.error(f"unknown target {target!r}: a group ({', '.join(GROUPS)}) or one of {sorted(MODULES)}")
        modules += [m for m in (GROUPS[target] if target in GROUPS else [target]) if m not in modules]

    WORK.mkdir(exist_ok=True)
    summary_path = WORK / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for module in modules:
        print(f"== {module}: mutating, tests {', '.join(MODULES[module])}", flush=True)
        try:
            verdicts = run_module(module, MODULES[module], args.max_children)
        except RuntimeError as error:  # the next modules still run; this one is reported as not measured
            print(error, flush=True)
            summary.pop(module, None)
            continue
        counts, unreviewed, stale = classify(verdicts)
        summary[module] = {status: len(names) for status, names in counts.items()}
        summary[module]["score"] = round(score(counts), 3)
        summary_path.write_text(json.dumps(summary, indent=1, sort_keys=True))
        for name, status, diff in unreviewed:
            print(f"-- {status}: {name}\n{diff}\n")
        for name in stale:
            print(f"-- stale entry in tests/mutation/equivalent.py (the mutant's code changed): {name}")
        print(f"== {module}: {summary[module]}", flush=True)

    named = ("killed", "survived", "equivalent", "gpu-only")
    print(f"\n{'module':28} {'killed':>7} {'survived':>9} {'equivalent':>11} {'gpu-only':>9} {'other':>6} {'score':>6}")
    for module in (m for m in modules if m in summary):
        row = summary[module]
        other = sum(v for k, v in row.items() if k not in (*named, "score"))
        print(f"{module:28} {row.get('killed', 0):7} {row.get('survived', 0):9} {row.get('equivalent', 0):11} "
              f"{row.get('gpu-only', 0):9} {other:6} {row['score']:6.0%}")
    print("score: (killed + timeout) / (all - equivalent - gpu-only); other: timeout, no tests, suspicious, segfault")
    return 0


if __name__ == "__main__":
    sys.exit(main())
