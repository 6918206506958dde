"""Lingling: a hands-free, local-first home voice assistant."""

__version__ = "0.1.0"
