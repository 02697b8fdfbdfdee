"""Oxen.ai's async queue: REST client, the /api/events stream, lost-POST recovery."""
