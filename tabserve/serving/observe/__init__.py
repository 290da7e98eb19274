"""Observation: Prometheus metrics, drift counting, the payload log and its offline report."""
