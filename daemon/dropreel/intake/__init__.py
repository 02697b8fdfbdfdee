"""Intake: watch the inbox, read job files, claim them."""
