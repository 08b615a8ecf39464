"""The memory backend: one process, the embedded default."""
