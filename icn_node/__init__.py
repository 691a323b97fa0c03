"""icnd: node daemon for cooperative compute networks."""

__version__ = "0.1.0"
