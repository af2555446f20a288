"""Command-line programs of amgp (console scripts in pyproject.toml)."""
