"""Configuration errors: every problem names file, line, column and key path.

One :class:`ConfigError` carries all problems found in one load, so an operator fixes the whole
file in one go instead of one error per run::

    config.yaml:14:7: numbers[1].options[0].digit: must be 1-9, got 12
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in a configuration file (``line``/``column`` are 1-based)."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__(self._summary())

    def _summary(self) -> str:
        count = len(self.issues)
        head = f"{count} configuration error{'s' if count != 1 else ''}"
        return "\n".join([head, *(str(issue) for issue in self.issues)])

    def __str__(self) -> str:
        return self._summary()
