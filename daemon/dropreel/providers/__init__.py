"""Providers: the seam (base), shared HTTP helpers, and one folder per provider kind."""
