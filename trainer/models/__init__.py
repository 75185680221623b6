"""Pure torch modules: the Two-Tower retrieval model and the DLRM ranker."""
