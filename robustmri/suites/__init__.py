"""The built-in benchmark suites (TOML), read with importlib.resources."""
