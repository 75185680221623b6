"""Faust streaming worker: seen-item Bloom filters, streaming features, recommendation refresh."""
