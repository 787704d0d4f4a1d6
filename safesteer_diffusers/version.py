"""The library version, recorded in every pack this library writes."""

__version__ = "0.1.0"
