"""Sweeps: requests (:mod:`.requests`), presets (:mod:`.configs`), plan (:mod:`.plan`), resumable
run (:mod:`.run`) and outputs (:mod:`.outputs`)."""
