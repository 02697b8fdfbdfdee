"""Completion hooks: the command a user configured, its environment and its input."""
