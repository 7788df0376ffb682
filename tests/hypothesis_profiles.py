"""Hypothesis profiles for the whole suite (loaded by tests/conftest.py before any test
module is imported, so every ``settings(...)`` in the tests inherits from the active one).

- ``ci`` (the default, what `make test` and CI run): derandomized, so every run draws the same
  examples (a hash of the test function seeds them) and no example database carries state
  from one run to the next. A run fails only when the code changed, never because it drew
  something new; a counterexample found elsewhere is added as an ``@example``.
- ``explore`` (``HYPOTHESIS_PROFILE=explore``, `make explore`): random draws, every test's
  example count times ``EXPLORE_FACTOR``, the example database on: the wide search that finds
  new counterexamples, run on purpose and not as part of CI.

Tests give their counts through :func:`examples`, so the explore run scales them too.
"""

from __future__ import annotations

import os

from hypothesis import settings

EXPLORE_FACTOR = 10

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=1000, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """A test's ``max_examples``: as given in CI, ``EXPLORE_FACTOR`` times as many when
    exploring."""
    return count * EXPLORE_FACTOR if PROFILE == "explore" else count
