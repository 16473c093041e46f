"""Losses of the preference stages, one module per family: dpo (pairwise, with or without a reference), kto,
reward (reward models); `logps` sums token log-probabilities per sequence for all of them."""
