"""The transport layer: WebSocket and HTTP protocol classes for uvicorn, on public APIs.

It imports nothing from ``wschat.server`` outside this package; layers above reach a socket
only through the ``Transport`` and ``Sink`` protocols of ``extension.py``.
"""
