"""Checking a job's request against what its model accepts, before anything is paid."""
