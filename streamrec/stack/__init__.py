"""The embedded local stack: real Kafka, Valkey+RedisBloom and Triton processes, no Docker."""

from streamrec.stack.manager import LocalStack

__all__ = ["LocalStack"]
