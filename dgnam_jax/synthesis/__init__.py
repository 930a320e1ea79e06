"""Synthesis: parameterizations x optax transformations x objectives, the one loop (:mod:`.loop`),
the methods registry (:mod:`.methods`) and the public entry points (:mod:`.api`)."""
