"""One module per scenario of issue 6; each `run(...)` returns a plain dict of figures."""
