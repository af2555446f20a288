"""Surviving mutants reviewed as equivalent (no test can tell them apart from the code): mutant name ->
(the mutated code, as run.py prints it from the diff's '+' lines; an entry whose code no longer matches is
reported stale, not counted), one-line reason). Names are mutmut 3.8's."""

EQUIVALENT = {
}
