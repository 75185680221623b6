"""confluent-kafka consumers: the event archiver and a recommendations-topic example client."""
