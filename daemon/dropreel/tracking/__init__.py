"""Tracking: the push stream, polls, matching observations to pending generations."""
