"""The Python peers Zephyr is compared with, on the same no-op workload and the same machine."""
