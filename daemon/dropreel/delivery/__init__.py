"""Delivery: download each result, place it, write the manifest, hand it to the hooks."""
