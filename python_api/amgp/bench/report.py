"""Results as a JSON document and as markdown (the stdout table and the bench/RESULTS.md sections)."""
import json
import math

SCHEMA = "amgp-bench/1"


def make_document(meta, kernel_rows=(), training_rows=()):
    return {"schema": SCHEMA, "meta": meta, "kernel": list(kernel_rows), "training": list(training_rows)}


def _finite(value):
    """JSON has no NaN/inf: a non-finite number is stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path, document):
    with open(path, "w") as out:
        json.dump(_finite(document), out, indent=1, allow_nan=False)
        out.write("\n")


def read_json(path):
    with open(path) as src:
        document = json.load(src)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not an amgp-bench result (expected schema {SCHEMA!r})")
    return document


def _ms(value):
    return "n/a" if value is None else f"{value:.3f}"


def _ratio(value, suffix=""):
    return "n/a" if value is None else f"{value:.2f}{suffix}"


def _spread(row):
    if row.get("q1_ms") is None:
        return "n/a"
    return f"{row['q1_ms']:.3f}–{row['q3_ms']:.3f}"


def _table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def kernel_table(rows):
    header = ["shape BxINxOUT", "case", "pass", "density", "method", "median ms", "IQR ms", "speedup vs dense",
              "ideal", "fraction of limit"]
    lines = [[r["shape"], r["case"] or "any", r["pass"], f"{r['density']:g}", r["method"], _ms(r["median_ms"]),
              _spread(r), _ratio(r.get("speedup_vs_dense"), "x"), _ratio(r.get("ideal_speedup"), "x"),
              _ratio(r.get("fraction_of_limit"))] for r in rows]
    return _table(header, lines)


def summary_table(rows):
    """One line per (shape, case, pass, method), one column per density: "speedup / fraction of limit"."""
    densities = sorted({r["density"] for r in rows}, reverse=True)
    cells, ideal = {}, {}
    for r in rows:
        key = (r["shape"], r["case"], r["pass"])
        ideal.setdefault(key, {})[r["density"]] = r.get("ideal_speedup")
        if r["method"] != "dense":
            speed, fraction = r.get("speedup_vs_dense"), r.get("fraction_of_limit")
            text = "n/a" if speed is None else f"{speed:.2f}x" + ("" if r["method"] == "compacted" else
                                                                 f" / {_ratio(fraction)}")
            cells.setdefault(key + (r["method"],), {})[r["density"]] = text
    lines = []
    for key, per_density in ideal.items():
        lines.append([*key, "*ideal*"] + [_ratio(per_density.get(d), "x") for d in densities])
        for cell_key, values in cells.items():
            if cell_key[:3] == key:
                lines.append([*key, cell_key[3]] + [values.get(d, "") for d in densities])
    header = ["shape BxINxOUT", "case", "pass", "method"] + [f"d={d:g}" for d in densities]
    return _table(header, lines)


def training_table(rows):
    header = ["model", "batch", "method", "density", "MLP weight density", "median ms", "IQR ms",
              "speedup vs nn.Linear", "speedup vs dense phase", "fraction of limit", "fraction of floor"]
    lines = [[r["model"], r["batch"], r["method"], f"{r['density']:g}", f"{r['weight_density']:.3f}",
              _ms(r["median_ms"]), _spread(r), _ratio(r.get("speedup_vs_nn_linear"), "x"),
              _ratio(r.get("speedup_vs_dense_phase"), "x"), _ratio(r.get("fraction_of_limit"), ""),
              _ratio(r.get("fraction_of_floor"), "")] for r in rows]
    return _table(header, lines)


def _errors(rows):
    """A markdown list of the measurements that failed, or "" when none did."""
    failed = [r for r in rows if r.get("error")]
    if not failed:
        return ""
    items = [f"- {r.get('shape', r.get('model'))} {r.get('case') or ''} {r.get('pass', '')} d={r['density']:g} "
             f"{r['method']}: {r['error']}" for r in failed]
    return "\n\nFailed measurements:\n" + "\n".join(items)


def header_lines(meta):
    threads = f"{meta.get('num_threads')} torch threads, {meta.get('cpu_count')} CPUs"
    if meta.get("gpu"):
        machine = f"{meta['gpu']} (compute capability {meta.get('gpu_capability')}); host {meta.get('cpu')}, {threads}"
    else:
        machine = f"{meta.get('cpu')}, {threads}"
    return [
        f"- machine: {machine}",
        f"- date: {meta.get('date')}",
        f"- command: `{meta.get('command')}`",
        f"- device {meta.get('device')}, torch {meta.get('torch')}, triton {meta.get('triton')}, dtype "
        f"{meta.get('dtype')}, block size {meta.get('block_size')}, warmup {meta.get('warmup')}, repeats "
        f"{meta.get('repeats')}, {meta.get('copies')} rotated input copies, backends "
        f"{', '.join(meta.get('backends') or []) or 'none'}",
    ]


LEGEND = ("speedup = dense median / median; ideal = 1/d (out only) or 1/d^2 (in+out); fraction of limit = "
          "compacted median / median (the compacted limit: the same GEMM on pre-sliced contiguous active "
          "sub-matrices); IQR = 25th–75th percentile.")
SUMMARY_LEGEND = "Summary: speedup over dense nn.Linear / fraction of the compacted limit, per density."


def render_markdown(document):
    meta, kernel, training = document["meta"], document.get("kernel", []), document.get("training", [])
    parts = ["\n".join(header_lines(meta))]
    if kernel:
        parts += [SUMMARY_LEGEND, summary_table(kernel), LEGEND, kernel_table(kernel) + _errors(kernel)]
    if training:
        parts += ["Training step (forward + backward + optimizer step); fraction of limit = the compacted model's "
                  "median / median at the same density (at density 1: the nn.Linear model's); fraction of floor = "
                  "the contract floor's median / median (the compacted model's forward and backward plus a fresh "
                  "full-size gradient and a full-size optimizer step every step; above 1 the sparse phase beats it):",
                  training_table(training) + _errors(training)]
    return "\n\n".join(parts) + "\n"
