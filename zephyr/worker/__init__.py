"""The worker service: connects to coordinators, executes assigned runs, reports back."""
