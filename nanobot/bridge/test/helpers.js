'use strict';
// Test helpers: a bridge server wired to a FakeSocket through the real WhatsAppLink.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { once } = require('events');
const WebSocket = require('ws');
const { BridgeServer } = require('../src/server');
const { PendingQueue } = require('../src/queue');
const { LidMap } = require('../src/lidmap');
const { WhatsAppLink } = require('../src/whatsapp');
const { FakeSocket, download } = require('./fake-whatsapp');

const TOKEN = 'test-token-0123456789abcdef';

function quietLog(lines = []) {
  const log = {};
  for (const l of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) log[l] = (m) => lines.push(`${l} ${m}`);
  log.child = () => log;
  log.lines = lines;
  return log;
}

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bridge-test-'));
}

/** A started server + link on a fake WhatsApp socket; call stop() when done. */
async function startBridge({ authTimeoutMs = 300, queueMax = 100, dir = tmpdir(), linked = true } = {}) {
  const log = quietLog();
  const sockets = [];
  const lidmap = new LidMap(path.join(dir, 'auth', 'lid-map.json'), log);
  fs.mkdirSync(path.join(dir, 'auth'), { recursive: true, mode: 0o700 });
  const link = new WhatsAppLink({
    authDir: path.join(dir, 'auth'),
    mediaDir: path.join(dir, 'media'),
    makeSocket: () => {
      const s = new FakeSocket({ linked });
      sockets.push(s);
      return s;
    },
    useAuthState: async () => ({ state: {}, saveCreds: async () => fs.writeFileSync(path.join(dir, 'auth', 'creds.json'), '{}', { mode: 0o644 }) }),
    download,
    lidmap,
    log,
  });
  const queue = new PendingQueue(queueMax, path.join(dir, 'auth', 'bridge-queue.json'), log);
  const server = new BridgeServer({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    authTimeoutMs,
    queue,
    log,
    handlers: {
      send: (to, text) => link.sendText(to, text),
      typing: (to, on) => link.typing(to, on),
      status: () => link.status(),
    },
  });
  link.on('message', (f) => server.deliver(f));
  link.on('status', (s) => server.broadcast({ type: 'status', ...s }));
  link.on('qr', (qr) => server.broadcast({ type: 'qr', qr }));
  const port = await server.listen();
  await link.start();
  await new Promise((r) => setImmediate(r));
  return {
    dir, log, link, server, queue, port, lidmap, sockets,
    get sock() {
      return sockets[sockets.length - 1];
    },
    url: `ws://127.0.0.1:${port}`,
    async stop() {
      link.stop();
      await server.close();
    },
  };
}

/** A client that records frames; next(type) waits for the next frame of that type. */
async function connect(url, { headers } = {}) {
  const ws = new WebSocket(url, { headers });
  const frames = [];
  const waiters = [];
  ws.on('message', (d) => {
    const f = JSON.parse(d.toString());
    frames.push(f);
    for (const w of waiters.splice(0)) w();
  });
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.frames = frames;
  ws.next = async (type, timeoutMs = 2000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = frames.findIndex((f) => f.type === type && !f._seen);
      if (i >= 0) {
        frames[i]._seen = true;
        return frames[i];
      }
      if (Date.now() > deadline) throw new Error(`no ${type} frame; got ${JSON.stringify(frames)}`);
      await new Promise((r) => {
        waiters.push(r);
        setTimeout(r, 50);
      });
    }
  };
  ws.sendJson = (o) => ws.send(JSON.stringify(o));
  await Promise.race([once(ws, 'open'), ws.closed]);
  return ws;
}

async function authed(url, role) {
  const ws = await connect(url);
  ws.sendJson({ type: 'auth', token: TOKEN, ...(role ? { role } : {}) });
  await ws.next('ready');
  return ws;
}

module.exports = { TOKEN, startBridge, connect, authed, tmpdir, quietLog };
