"""The chat layer: names, rooms, history, fan-out and the cluster, over the connection layer.

It knows no socket type (no Starlette WebSocket, websockets or uvicorn): it reaches peers
only through ``wschat.server.conn``. It must not import the handlers, the guard or the app.
"""
