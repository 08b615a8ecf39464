"""The socket layer: WebSocket handshake and framing, one Connection per phone."""
