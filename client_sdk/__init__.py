"""fieldpush client SDK: what a phone app, a test harness or a load test embeds.

It has no server dependencies; the wire codec in :mod:`client_sdk.protocol` is
shared with the server.
"""
