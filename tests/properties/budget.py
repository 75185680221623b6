"""The example budget of these property tests, applied per test (not as a global profile, so other
hypothesis tests of the suite keep their own settings).

CI runs a fixed, reproducible set of examples; ``STREAMREC_PROPERTY_EXAMPLES=5000`` searches more widely
with fresh random examples (a bench-style run, not for CI).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_EXAMPLES = os.environ.get("STREAMREC_PROPERTY_EXAMPLES")

PROPERTY_SETTINGS = settings(
    max_examples=int(_EXAMPLES) if _EXAMPLES else 200,
    deadline=None,
    derandomize=_EXAMPLES is None,  # CI: the same examples every run, so a failure reproduces locally
    database=None,  # no .hypothesis/ directory in the working tree
    suppress_health_check=[HealthCheck.too_slow],
)
