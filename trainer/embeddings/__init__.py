"""Item content embeddings: text (sentence-transformers) and images (CLIP), PCA-reduced and cached."""
