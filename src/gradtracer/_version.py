"""Package version (single source for reports and the CLI)."""

__version__ = "1.0.0.dev0"
