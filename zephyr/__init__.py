"""Zephyr: a distributed task scheduler on PostgreSQL and gRPC."""

from __future__ import annotations

__version__ = "0.1.0"
