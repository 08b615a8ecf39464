"""The Redis backend: RESP client, pub/sub, history, ledger, presence, records.

Its Lua scripts are in ``lua/``.
"""
