"""The sections of ``reports/paper.md`` in order, by name."""

from __future__ import annotations

from experiments.paper import (blends, class_accuracy, memorization, receptive_fields,
                               softmax_pairs, transfer)

SECTIONS = {s.name: s for s in sorted(
    [receptive_fields.SECTION, class_accuracy.SECTION, blends.SECTION, softmax_pairs.SECTION, memorization.SECTION, transfer.SECTION],
    key=lambda s: s.number)}
