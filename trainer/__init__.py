"""Trainer: datasets, content embeddings, Two-Tower + DLRM models, training, evaluation and export."""
