"""The recommendation HTTP API (FastAPI): recommendations, event ingestion, health, readiness, metrics."""
