// Node's `ws`: the reference server people most often pick for raw WebSocket speed.
//
// Same surface as the article (echo "You said: ..." at /ws, "Client {id}: ..." broadcast to
// every client of /ws/{id}), written the way ws's README shows a broadcast: one loop over
// wss.clients, no compression. benchmarks/run.py runs `npm ci` here first.
//
//     node benchmarks/node/server.js PORT
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2]);
const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 65536 });
const room = new Set();

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?', 1)[0];
  if (path !== '/ws' && !path.startsWith('/ws/')) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (path === '/ws') {
      ws.on('message', (data) => ws.send(`You said: ${data}`));
      return;
    }
    const clientId = path.slice('/ws/'.length);
    room.add(ws);
    ws.on('message', (data) => {
      const text = `Client ${clientId}: ${data}`;
      for (const client of room) {
        if (client.readyState === WebSocket.OPEN) client.send(text);
      }
    });
    ws.on('close', () => room.delete(ws));
  });
});

server.listen(port, '127.0.0.1', 2048, () => {
  console.log(`listening on http://127.0.0.1:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
