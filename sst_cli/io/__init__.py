"""Images and files: the only place sst reads or writes an image, and the one atomic write.

- ``images``: decode (``read_image``, ``probe``), encode (``write_image``, ``encode``), pixel conversions;
- ``files``: atomic writes, stale temporaries, finding image files in folders.

Imports only ``sst_cli.errors``.
"""
