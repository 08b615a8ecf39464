"""Events and their positions: the event record, offsets, pre-encoded WebSocket frames. Pure."""
