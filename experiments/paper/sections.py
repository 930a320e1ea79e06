"""The sections of ``reports/paper.md`` in order, by name."""

from __future__ import annotations

from experiments.paper import (blends, class_accuracy, evolution, layers, memorization,
                               receptive_fields, softmax_pairs, split_classes, transfer)

_ALL = (layers, receptive_fields, evolution, class_accuracy, split_classes, softmax_pairs, blends, transfer,
        memorization)
SECTIONS = {s.name: s for s in sorted((m.SECTION for m in _ALL), key=lambda s: s.number)}
