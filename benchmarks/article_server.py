"""The article's ConnectionManager server, kept faithful as the benchmark baseline.

Copied from ``shared/reference/fastapi-websocket-minimal-example.txt`` (the echo endpoint and
the ConnectionManager broadcast endpoint, as the article writes them). Two changes only, both
outside the pattern under test: the two endpoints live in one app (the article shows them in
two snippets), and it binds to 127.0.0.1 on the port given as argv[1] instead of 0.0.0.0:8000.

    python benchmarks/article_server.py PORT
"""

from typing import List  # noqa: UP035  (kept as the article writes it)

from fastapi import FastAPI, WebSocket


class ConnectionManager:
    def __init__(self):
        self.active_connections: List[WebSocket] = []  # noqa: UP006

    async def connect(self, websocket: WebSocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket):
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str):
        for connection in self.active_connections:
            try:
                await connection.send_text(message)
            except Exception:
                # Connection failed; removed on next disconnect
                pass


app = FastAPI()
manager = ConnectionManager()


@app.websocket("/ws")
async def echo_endpoint(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"You said: {data}")
    except Exception:
        await websocket.close()


@app.websocket("/ws/{client_id}")
async def websocket_endpoint(websocket: WebSocket, client_id: str):
    await manager.connect(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            await manager.broadcast(f"Client {client_id}: {data}")
    except Exception:
        manager.disconnect(websocket)


if __name__ == "__main__":
    import sys

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
