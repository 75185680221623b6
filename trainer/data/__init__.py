"""Datasets in the archive layout: MovieLens-100K, synthetic data, and the loader the trainer reads them with."""
