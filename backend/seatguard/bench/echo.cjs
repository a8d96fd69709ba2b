// Baseline for `seatguard bench`: a bare WebSocket echo server on Node's `ws` package.
// Usage: node echo.cjs PORT  (CommonJS, so NODE_PATH can point at the repository's modules)
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const server = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, backlog: 4096 });
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.on('listening', () => console.log('listening'));
