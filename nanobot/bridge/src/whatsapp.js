'use strict';
// The WhatsApp side: one Baileys socket, reconnected with backoff unless WhatsApp logged us out.

const fs = require('fs');
const path = require('path');
const { EventEmitter } = require('events');
const { toFrame, splitText } = require('./message');
const { normLid, normPhone } = require('./lidmap');
const { ensurePrivateDir, tightenFiles, writePrivate } = require('./files');

const LOGGED_OUT = 401; // Baileys DisconnectReason.loggedOut
const RESTART_REQUIRED = 515; // after linking, WhatsApp asks for a fresh connection

class WhatsAppLink extends EventEmitter {
  /**
   * @param {object} o
   * @param {string} o.authDir  Baileys' multi-file auth state (0700, files 0600)
   * @param {string} o.mediaDir  where voice notes are saved (0700, files 0600)
   * @param {Function} o.makeSocket  Baileys makeWASocket, or a fake with the same surface
   * @param {Function} o.useAuthState  Baileys useMultiFileAuthState
   * @param {Function} o.download  (msg, sock) → Promise<Buffer> for a media message
   * @param {object} o.lidmap  LidMap
   * Events: 'message' (frame), 'status' (status object), 'qr' (string).
   */
  constructor(o) {
    super();
    this.o = o;
    this.log = o.log;
    this.lidmap = o.lidmap;
    this.sock = null;
    this.state = { state: 'stopped', me: null, detail: '' };
    this.failures = 0;
    this.stopped = false;
    this.timer = null;
    this.maxMediaBytes = o.maxMediaBytes ?? 16 * 1024 * 1024;
  }

  status() {
    return { ...this.state };
  }

  _setState(state, detail = '', me = this.state.me) {
    this.state = { state, me, detail };
    this.emit('status', this.status());
  }

  async start() {
    ensurePrivateDir(this.o.authDir);
    tightenFiles(this.o.authDir);
    await this._connect();
  }

  async _connect() {
    if (this.stopped) return;
    this._setState('connecting');
    const { state, saveCreds } = await this.o.useAuthState(this.o.authDir);
    tightenFiles(this.o.authDir);
    const sock = this.o.makeSocket({
      auth: state,
      logger: this.o.baileysLog || this.log.child({ class: 'baileys' }),
      browser: ['nanobot', 'Chrome', '1.0'],
      markOnlineOnConnect: false,
      syncFullHistory: false,
      printQRInTerminal: false,
    });
    this.sock = sock;
    sock.ev.on('creds.update', async () => {
      await saveCreds();
      tightenFiles(this.o.authDir);
    });
    sock.ev.on('connection.update', (u) => this._onConnection(sock, u));
    sock.ev.on('messages.upsert', (u) => this._onMessages(sock, u));
    sock.ev.on('chats.phoneNumberShare', (u) => this.lidmap.learn(u && u.lid, u && u.jid));
    sock.ev.on('lid-mapping.update', (u) => this.lidmap.learn(u && u.lid, u && u.pn));
    const contacts = (list) => {
      for (const c of Array.isArray(list) ? list : []) {
        if (!c) continue;
        this.lidmap.learn(c.lid || (normLid(c.id) && c.id), c.phoneNumber || c.jid || (normPhone(c.id) && c.id));
      }
    };
    sock.ev.on('contacts.upsert', contacts);
    sock.ev.on('contacts.update', contacts);
  }

  _onConnection(sock, u) {
    if (sock !== this.sock || !u) return;
    if (u.qr) {
      this._setState('qr', 'scan the QR code with WhatsApp → Linked devices');
      this.emit('qr', u.qr);
    }
    if (u.connection === 'open') {
      this.failures = 0;
      const me = sock.user && sock.user.id ? normPhone(sock.user.id) || sock.user.id : null;
      this._setState('open', '', me);
      this.log.info(`WhatsApp connected${me ? ` as ${me.split('@')[0]}` : ''}`);
    } else if (u.connection === 'close') {
      const code = u.lastDisconnect?.error?.output?.statusCode;
      this.sock = null;
      if (code === LOGGED_OUT) {
        this._setState('logged_out', 'WhatsApp logged this device out: run `nanobot channels login whatsapp`', null);
        this.log.error('WhatsApp logged this device out; link it again with `nanobot channels login whatsapp`');
        return;
      }
      if (this.stopped) return;
      const delay = code === RESTART_REQUIRED ? 0 : Math.min(1000 * 2 ** this.failures, this.o.backoffMaxMs ?? 60000);
      this.failures += 1;
      this._setState('reconnecting', `connection closed (${code ?? 'no code'}); retrying in ${Math.round(delay / 1000)} s`);
      this.log.warn(`WhatsApp connection closed (${code ?? 'no code'}); reconnecting in ${delay} ms`);
      this.timer = setTimeout(() => this._connect().catch((e) => this._failed(e)), delay);
    }
  }

  _failed(e) {
    this.log.error(`WhatsApp connect failed: ${e.message}`);
    const delay = Math.min(1000 * 2 ** this.failures, this.o.backoffMaxMs ?? 60000);
    this.failures += 1;
    this._setState('reconnecting', `connect failed; retrying in ${Math.round(delay / 1000)} s`);
    this.timer = setTimeout(() => this._connect().catch((err) => this._failed(err)), delay);
  }

  async _onMessages(sock, u) {
    if (!u || u.type !== 'notify' || !Array.isArray(u.messages)) return;
    for (const msg of u.messages) {
      let parsed;
      try {
        parsed = toFrame(msg, this.lidmap);
      } catch (e) {
        this.log.warn(`skipped a message that could not be read: ${e.message}`);
        continue;
      }
      if (!parsed) continue;
      const { frame, media, mime } = parsed;
      if (media) {
        try {
          frame.media = [await this._saveMedia(sock, msg, frame, media, mime)];
        } catch (e) {
          this.log.warn(`could not download the ${frame.kind} of message ${frame.id}: ${e.message}`);
          frame.mediaError = 'download failed';
        }
      }
      this.emit('message', frame);
    }
  }

  async _saveMedia(sock, msg, frame, media, mime) {
    const size = Number(media.fileLength?.low ?? media.fileLength ?? 0);
    if (size > this.maxMediaBytes) throw new Error(`too large (${size} bytes)`);
    const buf = await this.o.download(msg, sock);
    if (buf.length > this.maxMediaBytes) throw new Error(`too large (${buf.length} bytes)`);
    ensurePrivateDir(this.o.mediaDir);
    const ext = /mpeg/.test(mime) ? 'mp3' : /mp4/.test(mime) ? 'm4a' : 'ogg';
    const file = path.join(this.o.mediaDir, `${frame.id.replace(/[^A-Za-z0-9_-]/g, '_')}.${ext}`);
    writePrivate(file, buf);
    return { path: file, mime, bytes: buf.length, kind: frame.kind };
  }

  /** Send text to a chat (split when long); resolves to the number of parts. */
  async sendText(to, text) {
    const sock = this.sock;
    if (!sock || this.state.state !== 'open') {
      const e = new Error(`WhatsApp is not connected (${this.state.state})`);
      e.retryable = this.state.state !== 'logged_out';
      throw e;
    }
    const parts = splitText(text);
    for (const part of parts) await sock.sendMessage(to, { text: part });
    return parts.length;
  }

  async typing(to, on) {
    if (this.sock && this.state.state === 'open') await this.sock.sendPresenceUpdate(on ? 'composing' : 'paused', to);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.sock) {
      try {
        this.sock.end(undefined);
      } catch (e) {
        this.log.debug(`closing the WhatsApp socket: ${e.message}`);
      }
    }
    this.sock = null;
  }
}

/** Remove voice notes older than maxAgeMs (nanobot transcribes them right away). */
function pruneMedia(dir, maxAgeMs, now = Date.now()) {
  let names = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const p = path.join(dir, name);
    try {
      if (now - fs.statSync(p).mtimeMs > maxAgeMs) fs.unlinkSync(p);
    } catch {
      // gone already
    }
  }
}

module.exports = { WhatsAppLink, pruneMedia, LOGGED_OUT };
