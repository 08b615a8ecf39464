"""The HTTP API: one toolkit and one module per route group."""
