'use strict';
// Messages from WhatsApp waiting for nanobot's ack: bounded, in order, kept on disk (0600) so a
// bridge restart loses nothing that WhatsApp already handed over.

const { writePrivate, readJson } = require('./files');

class PendingQueue {
  /**
   * @param {number} max  most messages kept; when full the oldest is dropped (and logged)
   * @param {string|null} file  where the queue is persisted, or null for memory only
   */
  constructor(max, file, log) {
    this.max = max;
    this.file = file;
    this.log = log;
    this.items = [];
    this.dropped = 0;
    if (file) {
      const saved = readJson(file, []);
      this.items = Array.isArray(saved) ? saved.filter((m) => m && typeof m.id === 'string') : [];
    }
  }

  get size() {
    return this.items.length;
  }

  /** Add a message (frame with a unique id); a repeated id is ignored. Returns false if repeated. */
  push(message) {
    if (this.items.some((m) => m.id === message.id)) return false;
    this.items.push(message);
    while (this.items.length > this.max) {
      const old = this.items.shift();
      this.dropped += 1;
      this.log.warn(
        `queue full (${this.max} messages waiting for nanobot): dropped message ${old.id}; ` +
          'start the nanobot gateway or raise BRIDGE_QUEUE_MAX',
      );
    }
    this.save();
    return true;
  }

  /** nanobot has stored the message durably: forget it. */
  ack(id) {
    const before = this.items.length;
    this.items = this.items.filter((m) => m.id !== id);
    if (this.items.length !== before) this.save();
    return this.items.length !== before;
  }

  all() {
    return this.items.slice();
  }

  save() {
    if (this.file) writePrivate(this.file, JSON.stringify(this.items));
  }
}

module.exports = { PendingQueue };
