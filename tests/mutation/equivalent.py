"""Surviving mutants reviewed as equivalent (no test can tell them apart from the code): mutant name ->
(the mutated code, as run.py prints it from the diff's '+' lines; an entry whose code no longer matches is
reported stale, not counted), one-line reason). Names are mutmut 3.8's."""

EQUIVALENT = {
    # amgp.meter: the cached FLOPs per sample are recomputed whenever the mask versions differ from the cached
    # ones, and a tuple of versions never equals None or "": the first count always recomputes.
    "amgp.meter.xǁCostMeterǁ__init____mutmut_17": ('self._mask_versions = ""', "never equal to a versions tuple"),
    "amgp.meter.xǁCostMeterǁ__init____mutmut_18": ("self._per_sample = None", "overwritten before first read"),
    "amgp.meter.xǁCostMeterǁ__init____mutmut_19": ("self._per_sample = (1, 0)", "overwritten before first read"),
    "amgp.meter.xǁCostMeterǁ__init____mutmut_20": ("self._per_sample = (0, 1)", "overwritten before first read"),
    "amgp.meter.xǁCostMeterǁflops_per_sample__mutmut_6": (
        "self._mask_versions = None", "recomputes every step: same counts, only slower (a cache, not a result)"),
}
