"""The package version, in a module of its own so that any layer can read it without importing
the package's public API (``robustmri/__init__.py`` imports upward, into :mod:`robustmri.api`)."""

__version__ = "0.1.0"
