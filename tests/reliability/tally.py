"""What the reliability tests tried, counted, for the summary line at the end of the run.

Tests add to ``TALLY`` (``count("imds documents parsed", n)``); the conftest prints one line per kind
in pytest's terminal summary, so a run says how many generated cases and faults it really went through.
"""

from __future__ import annotations

from collections import Counter

TALLY: Counter[str] = Counter()
NOTES: list[str] = []  # figures worth a line of their own (e.g. time left before NotBefore)


def count(kind: str, n: int = 1) -> None:
    TALLY[kind] += n


def note(text: str) -> None:
    NOTES.append(text)
