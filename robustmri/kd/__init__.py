"""KD+attack: the robust translation model (attacker + generator + registration teacher -> student).

May import the training engine's helpers, the baselines, perturbations (for the PGD control), the
models, data and the bottom layers; never the results table, the bench or the report
(docs/architecture.md).
"""
