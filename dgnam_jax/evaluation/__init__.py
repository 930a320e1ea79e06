"""Evaluation: metrics (:mod:`.metrics`), judges (:mod:`.judging`), the dataset pass and
per-sweep scores (:mod:`.scoring`), per-run reports (:mod:`.runs`)."""
