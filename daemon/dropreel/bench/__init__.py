"""Benchmarks of dropreel against the simulator on loopback: `python -m dropreel.bench`."""
