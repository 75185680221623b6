"""Writing model exports in the layout of :mod:`streamrec.artifacts`, the FAISS index and Triton reloads."""
