"""The scheduler: Zephyr's HTTP API. Validates and writes tasks into PostgreSQL; never executes."""
