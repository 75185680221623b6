"""Offline evaluation: temporal split, retrieval and end-to-end metrics, baselines, markdown report."""
