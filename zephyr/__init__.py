"""Zephyr: a distributed task scheduler on PostgreSQL and gRPC."""

from __future__ import annotations

from zephyr.functions import task

__all__ = ["__version__", "task"]

__version__ = "0.1.0"
