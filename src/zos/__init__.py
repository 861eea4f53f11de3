"""zos's database foundation: configuration, schema and forward-only migrations."""

__version__ = "0.1.0"
