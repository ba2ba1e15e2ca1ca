"""Data: the embedded physics-based multi-contrast brain dataset and readers for NIfTI folders."""
