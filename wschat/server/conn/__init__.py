"""The connection layer: outbox, coalescing, close and abort, the one read loop, the hub.

It sits on the transport (``wschat.server.transport``) and knows no rooms, names or chat:
a connection carries only an opaque ``label`` for logs, and the hub's fan-out groups are
plain keys. It must not import ``wschat.server.chat``, the handlers, the guard or the app.
"""
