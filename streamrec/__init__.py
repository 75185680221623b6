"""streamrec: an event-driven streaming recommender (shared core).

The core holds what every component shares: settings, the event contract, typed errors,
the Kafka client SDK, the seen-item Bloom store, the local stack and the CLI. The app
folders (``streams``, ``consumers``, ``serving``, ``trainer``) import this package and
never each other.
"""

__version__ = "0.1.0"
