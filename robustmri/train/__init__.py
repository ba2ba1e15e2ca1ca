"""Training: the one engine that trains every registered model (config, data order, optimisers,
AMP, atomic checkpoints, exact resume, DDP), its loss log and its acceleration options.

Owns run folders (``config.json``, ``checkpoints/``, ``log.jsonl``, ``summary.json``). May import
the models, the data and the bottom layer (errors, atomic, progress, threads); never the bench, the
results table or the report (``pyproject.toml``'s import contracts)."""
