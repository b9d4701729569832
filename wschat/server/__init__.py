"""The chat server: a FastAPI app (``app.create_app``) and how to run it (``runner.serve``).

Layers, each importing only from those below it (``tests/server/test_layers.py``):

- ``transport/``: uvicorn and websockets, nothing of chat: ``http.py`` (the first protocol of
  every TCP connection) and ``ws.py`` (the WebSocket protocol); ``extension.py`` is the
  contract the layers above use;
- ``conn/``: outgoing frames, ``Connection`` (outbox, coalescing, close), the one read loop
  (``Reader``), the ``Hub`` and its one delivery policy; no rooms, no names;
- ``chat/``: ``ChatService``, fan-out, the cluster and its registry; no socket types;
- ``guard`` (handshake checks), ``handlers``, ``routing`` and ``app`` on top; ``runner``,
  ``workers``, ``settings``, ``logs`` and ``metrics`` run and observe the whole.
"""
