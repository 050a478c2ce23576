'use strict';
// A fake Baileys socket for tests: same event surface, no network. controlledFake(dir) adds a
// small HTTP control server on 127.0.0.1 (its port in dir/control-port) that the Python
// integration tests use to inject messages; what the bridge sends lands in dir/sent.jsonl.

const fs = require('fs');
const http = require('http');
const path = require('path');
const { EventEmitter } = require('events');
const { unwrap } = require('../src/message');

const ME = '15550000000:3@s.whatsapp.net';

class FakeSocket {
  constructor({ linked = true, onSend, onPresence } = {}) {
    this.ev = new EventEmitter();
    this.user = linked ? { id: ME } : undefined;
    this.sent = [];
    this.presence = [];
    this.ended = false;
    this.onSend = onSend || (() => {});
    this.onPresence = onPresence || (() => {});
    setImmediate(() => {
      this.ev.emit('creds.update', {});
      if (linked) this.ev.emit('connection.update', { connection: 'open' });
      else this.ev.emit('connection.update', { qr: 'FAKE-QR-CODE' });
    });
  }

  async sendMessage(jid, content) {
    if (this.failSends) throw new Error('fake send failure');
    const entry = { to: jid, text: content.text };
    this.sent.push(entry);
    this.onSend(entry);
    return { key: { id: `sent-${this.sent.length}`, remoteJid: jid, fromMe: true } };
  }

  async sendPresenceUpdate(type, jid) {
    this.presence.push({ type, to: jid });
    this.onPresence({ type, to: jid });
  }

  /** Deliver incoming WhatsApp messages as Baileys would. */
  receive(...messages) {
    this.ev.emit('messages.upsert', { type: 'notify', messages });
  }

  close(statusCode) {
    this.ev.emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: { output: { statusCode } } },
    });
  }

  end() {
    this.ended = true;
  }
}

/** A text message as Baileys delivers it. */
function textMessage({ id, from, text, participant, key = {}, pushName = 'Tester' }) {
  return {
    key: { remoteJid: from, fromMe: false, id, ...(participant ? { participant } : {}), ...key },
    message: { conversation: text },
    pushName,
    messageTimestamp: 1700000000,
  };
}

/** Media download for fake messages: the bytes are in audioMessage.fakeData (base64). */
async function download(msg) {
  const audio = unwrap(msg.message).audioMessage;
  return Buffer.from(audio.fakeData || '', 'base64');
}

function controlledFake(dir) {
  let current = null;
  const append = (file, obj) => fs.appendFileSync(path.join(dir, file), JSON.stringify(obj) + '\n');
  const makeSocket = () => {
    current = new FakeSocket({
      linked: !fs.existsSync(path.join(dir, 'unlinked')),
      onSend: (e) => append('sent.jsonl', e),
      onPresence: (e) => append('presence.jsonl', e),
    });
    return current;
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      try {
        const data = body ? JSON.parse(body) : {};
        if (!current) throw new Error('no socket yet');
        if (req.url === '/inject') current.receive(...(Array.isArray(data) ? data : [data]));
        else if (req.url === '/event') current.ev.emit(data.name, data.payload);
        else if (req.url === '/close') current.close(data.statusCode);
        else throw new Error(`unknown ${req.url}`);
        res.writeHead(200).end('{}');
      } catch (e) {
        res.writeHead(400).end(JSON.stringify({ error: e.message }));
      }
    });
  });
  server.listen(0, '127.0.0.1', () => {
    fs.writeFileSync(path.join(dir, 'control-port.tmp'), String(server.address().port));
    fs.renameSync(path.join(dir, 'control-port.tmp'), path.join(dir, 'control-port'));
  });
  server.unref();
  return { makeSocket, download };
}

module.exports = { FakeSocket, textMessage, download, controlledFake, ME };
