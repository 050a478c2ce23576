'use strict';
// LID → phone number, learned from what WhatsApp tells us, persisted (0600) in the auth dir.

const { writePrivate, readJson } = require('./files');

const PHONE_JID = /^(\d+)(?::\d+)?@(s\.whatsapp\.net|c\.us)$/;
const LID_JID = /^(\d+)(?::\d+)?@lid$/;

/** "123:4@lid" → "123@lid" (device suffix dropped); null if not a LID. */
function normLid(jid) {
  const m = typeof jid === 'string' && LID_JID.exec(jid);
  return m ? `${m[1]}@lid` : null;
}

/** "49123:7@s.whatsapp.net" → "49123@s.whatsapp.net"; null if not a phone JID. */
function normPhone(jid) {
  const m = typeof jid === 'string' && PHONE_JID.exec(jid);
  return m ? `${m[1]}@s.whatsapp.net` : null;
}

class LidMap {
  constructor(file, log) {
    this.file = file;
    this.log = log;
    const saved = file ? readJson(file, {}) : {};
    this.map = new Map(Object.entries(saved && typeof saved === 'object' ? saved : {}));
  }

  /** Remember lid ↔ phone when both are well-formed; returns true when something was new. */
  learn(lidJid, phoneJid) {
    const lid = normLid(lidJid);
    const phone = normPhone(phoneJid);
    if (!lid || !phone || this.map.get(lid) === phone) return false;
    this.map.set(lid, phone);
    if (this.file) writePrivate(this.file, JSON.stringify(Object.fromEntries(this.map)));
    this.log.info(`learned the phone number behind ${lid}`);
    return true;
  }

  get(lidJid) {
    const lid = normLid(lidJid);
    return lid ? this.map.get(lid) || null : null;
  }
}

module.exports = { LidMap, normLid, normPhone };
