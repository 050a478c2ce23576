'use strict';
// The WebSocket side of the bridge: loopback only, token first, then frames (see PROTOCOL.md).

const crypto = require('crypto');
const net = require('net');
const { EventEmitter } = require('events');
const { WebSocketServer } = require('ws');

const PROTOCOL = 1;
const CLOSE = {
  authTimeout: [4000, 'authentication timeout'],
  authFailed: [4001, 'authentication failed'],
  replaced: [4002, 'replaced by a newer channel connection'],
  shutdown: [1001, 'bridge shutting down'],
};

/** Constant-time comparison of two strings (hashing first hides the length too). */
function tokenMatches(given, expected) {
  if (typeof given !== 'string') return false;
  const a = crypto.createHash('sha256').update(given, 'utf8').digest();
  const b = crypto.createHash('sha256').update(expected, 'utf8').digest();
  return crypto.timingSafeEqual(a, b) && given.length === expected.length;
}

function isLoopback(host) {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

class BridgeServer extends EventEmitter {
  /**
   * @param {object} o
   * @param {string} o.host  must be loopback unless o.allowNonLoopback
   * @param {number} o.port  0 picks a free port
   * @param {string} o.token  shared secret every client must send first
   * @param {object} o.queue  PendingQueue of message frames waiting for an ack
   * @param {object} o.handlers  {send(to, text) → Promise, typing(to, on) → Promise, status() → object}
   */
  constructor(o) {
    super();
    if (!o.token) throw new Error('the bridge needs a token: set BRIDGE_TOKEN or BRIDGE_TOKEN_FILE');
    if (!isLoopback(o.host) && !o.allowNonLoopback) {
      throw new Error(
        `refusing to listen on ${o.host}: the bridge serves 127.0.0.1 only. ` +
          'Use BRIDGE_HOST=127.0.0.1 (or pass --unsafe-allow-non-loopback if you really mean it)',
      );
    }
    this.o = o;
    this.log = o.log;
    this.authTimeoutMs = o.authTimeoutMs ?? 5000;
    this.queue = o.queue;
    this.handlers = o.handlers;
    this.channel = null; // the one authenticated "channel" client (nanobot's gateway)
    this.clients = new Set(); // every authenticated client
    this.wss = null;
  }

  listen() {
    return new Promise((resolve, reject) => {
      const host = this.o.host === 'localhost' ? '127.0.0.1' : this.o.host;
      this.wss = new WebSocketServer({
        host,
        port: this.o.port,
        maxPayload: this.o.maxPayload ?? 1024 * 1024,
        // A browser page may open WebSockets to localhost; browsers always send Origin, nanobot never.
        verifyClient: (info) => !info.req.headers.origin,
      });
      this.wss.once('error', reject);
      this.wss.once('listening', () => {
        this.wss.off('error', reject);
        this.wss.on('error', (e) => this.log.error(`server error: ${e.message}`));
        this.port = this.wss.address().port;
        this.log.info(`listening on ws://${host}:${this.port} (token required)`);
        resolve(this.port);
      });
      this.wss.on('connection', (ws, req) => this._accept(ws, req));
    });
  }

  _accept(ws, req) {
    const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    let authed = false;
    const timer = setTimeout(() => {
      this.log.warn(`client ${peer}: no authentication within ${this.authTimeoutMs} ms; closed`);
      ws.close(...CLOSE.authTimeout);
      ws.terminate();
    }, this.authTimeoutMs);
    ws.on('error', (e) => this.log.warn(`client ${peer}: ${e.message}`));
    ws.on('close', () => {
      clearTimeout(timer);
      this.clients.delete(ws);
      if (this.channel === ws) {
        this.channel = null;
        this.log.info(`nanobot disconnected (${peer}); ${this.queue.size} message(s) waiting`);
      }
    });
    ws.on('message', (data, isBinary) => {
      if (authed) {
        this._frame(ws, data, isBinary);
        return;
      }
      clearTimeout(timer);
      const frame = isBinary ? null : parse(data);
      if (!frame || frame.type !== 'auth' || !tokenMatches(frame.token, this.o.token)) {
        const why = !frame || frame.type !== 'auth' ? 'first frame was not an auth frame' : 'wrong token';
        this.log.warn(`client ${peer}: authentication failed (${why}); closed`);
        ws.close(...CLOSE.authFailed);
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      authed = true;
      const role = frame.role === 'observer' ? 'observer' : 'channel';
      ws.role = role;
      this.clients.add(ws);
      if (role === 'channel') {
        if (this.channel && this.channel !== ws) {
          this.log.info('a newer nanobot connection replaces the previous one');
          this.channel.close(...CLOSE.replaced);
        }
        this.channel = ws;
      }
      this.log.info(`client ${peer} authenticated as ${role}`);
      sendFrame(ws, {
        type: 'ready',
        protocol: PROTOCOL,
        role,
        queued: this.queue.size,
        status: this.handlers.status(),
      });
      if (role === 'channel') for (const m of this.queue.all()) sendFrame(ws, m);
    });
  }

  async _frame(ws, data, isBinary) {
    const frame = isBinary ? null : parse(data);
    if (!frame || typeof frame.type !== 'string') {
      sendFrame(ws, { type: 'error', error: 'frames are JSON text objects with a "type"' });
      return;
    }
    const id = typeof frame.id === 'string' || typeof frame.id === 'number' ? frame.id : null;
    if (frame.type === 'status') {
      sendFrame(ws, { type: 'status', id, ...this.handlers.status() });
      return;
    }
    if (ws.role !== 'channel') {
      sendFrame(ws, { type: 'error', id, error: `an observer cannot send "${frame.type}" frames` });
      return;
    }
    if (frame.type === 'ack') {
      this.queue.ack(String(frame.id));
    } else if (frame.type === 'send') {
      if (typeof frame.to !== 'string' || typeof frame.text !== 'string' || !frame.text) {
        sendFrame(ws, { type: 'send_failed', id, error: 'send needs "to" and a non-empty "text"', retryable: false });
        return;
      }
      try {
        const parts = await this.handlers.send(frame.to, frame.text);
        sendFrame(ws, { type: 'sent', id, parts });
      } catch (e) {
        sendFrame(ws, { type: 'send_failed', id, error: String(e.message || e).slice(0, 300), retryable: e.retryable !== false });
      }
    } else if (frame.type === 'typing') {
      if (typeof frame.to === 'string') {
        this.handlers.typing(frame.to, frame.on !== false).catch((e) => this.log.debug(`typing: ${e.message}`));
      }
    } else {
      sendFrame(ws, { type: 'error', id, error: `unknown frame type "${String(frame.type).slice(0, 40)}"` });
    }
  }

  /** A message from WhatsApp: queue it until nanobot acks, and push it now if nanobot is here. */
  deliver(frame) {
    if (this.queue.push(frame) && this.channel) sendFrame(this.channel, frame);
  }

  /** Tell every authenticated client (status changes, QR codes). Nothing goes to others. */
  broadcast(frame) {
    for (const ws of this.clients) sendFrame(ws, frame);
  }

  close() {
    return new Promise((resolve) => {
      if (!this.wss) return resolve();
      for (const ws of this.wss.clients) ws.close(...CLOSE.shutdown);
      this.wss.close(() => resolve());
      setTimeout(() => {
        for (const ws of this.wss.clients) ws.terminate();
      }, 500).unref();
    });
  }
}

function parse(data) {
  try {
    const v = JSON.parse(data.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function sendFrame(ws, frame) {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
}

module.exports = { BridgeServer, tokenMatches, isLoopback, CLOSE, PROTOCOL };
