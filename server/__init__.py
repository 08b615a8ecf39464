"""fieldpush server: WebSocket gateway, publish API, history and resume."""

__version__ = "0.1.0"
