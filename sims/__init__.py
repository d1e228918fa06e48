"""Task spaces, samplers (MPTS and baselines), training, evaluation and worlds (issue 4)."""
