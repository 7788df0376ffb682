"""Property tests are deterministic in CI (issue 22.9): the ``ci`` profile is active unless
the explore run asks otherwise, and every property test takes its example count through
``examples()`` so that the explore run widens it."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import settings

from tests import hypothesis_profiles

TESTS = Path(__file__).resolve().parents[1]


def test_the_ci_profile_is_derandomized_and_keeps_no_example_database():
    profile = settings.get_profile("ci")
    assert profile.derandomize and profile.database is None
    if hypothesis_profiles.PROFILE == "ci":
        assert settings.default.derandomize and settings.default.database is None


def test_every_property_test_counts_its_examples_through_the_profile():
    offenders = []
    for path in sorted(TESTS.rglob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if not re.search(r"^@given", text, re.MULTILINE):
            continue
        for match in re.finditer(r"max_examples\s*=\s*([^,)]+)", text):
            if not match.group(1).startswith("examples("):
                offenders.append(f"{path.relative_to(TESTS)}: {match.group(0)}")
        if re.search(r"\b(derandomize|database)\s*=|^@seed\(", text, re.MULTILINE):
            offenders.append(f"{path.relative_to(TESTS)}: sets its own randomness")
    assert offenders == []
