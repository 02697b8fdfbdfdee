"""A local provider simulator: one core, one module per API dialect (tests, demo, benchmarks)."""
