"""The tracking server's one error, in a module of its own so that every part of the package raises it."""

from __future__ import annotations


class ServerConfigError(ValueError):
    """A server option is missing or malformed; the message says which and how to fix it."""
