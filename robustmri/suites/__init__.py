"""The built-in benchmark suites (TOML), read with importlib.resources.

Data files only: it imports nothing of robustmri.
"""
