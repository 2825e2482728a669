"""Generated gRPC code (`make proto`); not committed."""
