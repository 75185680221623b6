"""Kafka client SDK: produce interaction events, consume recommendations, manage topics, DLQ."""

from streamrec.client.consumer import RecommendationConsumer
from streamrec.client.producer import InteractionProducer

__all__ = ["InteractionProducer", "RecommendationConsumer"]
