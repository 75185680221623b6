"""Stage logic of the recommendation pipeline: plain modules shared by the Triton stages and the reference."""
