"""Uploads and the files they become (docs/attachments.md).

- :mod:`fieldpush.files.headers`: the tus 1.0.0 request headers, parsed strictly
  (Sans-I/O).
- :mod:`fieldpush.files.info`: one upload's metadata and its JSON form.
- :mod:`fieldpush.files.store`: :class:`FileStore`, finished files by SHA-256,
  and :class:`DirectoryStore`, its filesystem implementation.
- :mod:`fieldpush.files.uploads`: :class:`Uploads`, unfinished uploads on the
  shared directory: create, append a chunk, finish, terminate, quota.
- :mod:`fieldpush.files.expiry`: the background task that removes expired
  unfinished uploads.
"""
