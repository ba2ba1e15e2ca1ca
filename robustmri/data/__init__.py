"""Data: the embedded physics-based multi-contrast brain dataset and readers for NIfTI folders.

Owns the simulator, the readers, preparation, the split and the slice cache. May import the models'
interface (prepared batches are their ``Batch``), the protocol, the metrics and the bottom layer;
never perturbations, training, the bench or the report (docs/architecture.md).
"""
