"""Submission: POST each accepted job once, and settle a POST whose answer was lost."""
