"""Batch scoring of big files (score.py): on Spark or locally, with the service's checks and pipeline call."""
