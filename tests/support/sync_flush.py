"""A phone app in a process of its own, for the kill-mid-flush test.

``python -m tests.support.sync_flush DB WS_URL TOKEN DEVICE`` opens the SQLite
store ``DB``, connects and flushes its queue in small batches, then exits 0.
"""

from __future__ import annotations

import asyncio
import sys

from fieldpush_client import PushClient, SyncClient, SyncStore
from tests.support.stores import STORE_KEY


async def main(db: str, url: str, token: str, device: str) -> None:
    store = SyncStore(db, key=STORE_KEY)
    async with PushClient(url, token=token, device=device) as client:
        await client.wait_connected(10)
        sync = SyncClient(client, store, batch_size=4, auto=False)
        await sync.flush()
    store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
