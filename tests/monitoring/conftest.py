"""The worker fixtures of the stream tests, shared: the live metrics test runs a real worker the same way."""

from tests.streams.conftest import worker_factory  # noqa: F401
