"""The ratios every result is reported in."""


def speedup(reference_ms, ms):
    """How many times faster than the reference (dense nn.Linear): reference / time."""
    if ms is None or reference_ms is None or ms <= 0:
        return None
    return reference_ms / ms


def fraction_of_limit(limit_ms, ms):
    """How close to the compacted-dense limit: limit time / time (1.0 = as fast as the limit)."""
    return speedup(limit_ms, ms)


def ideal_speedup(case, density):
    """Speedup over dense if time scaled with the active weight: 1/d (out only), 1/d^2 (in+out)."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if case == "out_only":
        return 1.0 / density
    if case == "in_out":
        return 1.0 / density ** 2
    raise ValueError(f"case must be 'out_only' or 'in_out', got {case!r}")
