"""The sections of ``reports/paper.md`` in order, by name."""

from __future__ import annotations

from experiments.paper import blends, memorization, softmax_pairs, transfer

SECTIONS = {s.name: s for s in sorted(
    [blends.SECTION, softmax_pairs.SECTION, memorization.SECTION, transfer.SECTION],
    key=lambda s: s.number)}
