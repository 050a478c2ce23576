'use strict';
// Baileys WAMessage → the "message" frame nanobot receives (see PROTOCOL.md), and text splitting.

const { normLid, normPhone } = require('./lidmap');

const TEXT_LIMIT = 4000; // WhatsApp accepts ~65k, but long messages are unreadable on a phone

/** Unwrap the containers WhatsApp puts around the real content. */
function unwrap(message) {
  let m = message;
  for (let i = 0; i < 5 && m; i += 1) {
    const inner =
      m.ephemeralMessage?.message ||
      m.viewOnceMessage?.message ||
      m.viewOnceMessageV2?.message ||
      m.viewOnceMessageV2Extension?.message ||
      m.documentWithCaptionMessage?.message;
    if (!inner) break;
    m = inner;
  }
  return m;
}

/** What the message says: {kind, text, media?: the Baileys media node to download}. */
function content(message) {
  const m = unwrap(message);
  if (!m) return null;
  if (typeof m.conversation === 'string' && m.conversation) return { kind: 'text', text: m.conversation };
  if (m.extendedTextMessage?.text) return { kind: 'text', text: m.extendedTextMessage.text };
  if (m.imageMessage) return { kind: 'image', text: m.imageMessage.caption || '' };
  if (m.videoMessage) return { kind: 'video', text: m.videoMessage.caption || '' };
  if (m.documentMessage) {
    const d = m.documentMessage;
    return { kind: 'document', text: d.caption || '', fileName: d.fileName || '' };
  }
  if (m.audioMessage) {
    const a = m.audioMessage;
    return { kind: a.ptt ? 'voice' : 'audio', text: '', media: a, mime: a.mimetype || 'audio/ogg' };
  }
  return null; // reactions, stickers, protocol messages, polls…: nothing to answer
}

function isStatusOrBroadcast(jid) {
  return jid === 'status@broadcast' || /@broadcast$/.test(jid) || /@newsletter$/.test(jid);
}

/** The phone JID WhatsApp sent alongside a LID (field names differ between Baileys versions). */
function phoneFromKey(key, isGroup) {
  const fields = isGroup
    ? ['participantPn', 'participantAlt', 'participant_pn']
    : ['senderPn', 'remoteJidAlt', 'sender_pn'];
  for (const f of fields) {
    const phone = normPhone(key[f]);
    if (phone) return phone;
  }
  return null;
}

/**
 * Turn one Baileys message into a frame body, or null when nanobot should not see it
 * (our own messages, status broadcasts, newsletters, content without text or voice).
 * lidmap resolves a LID sender to a phone number when WhatsApp told us the mapping.
 */
function toFrame(msg, lidmap) {
  const key = msg && msg.key;
  if (!key || key.fromMe || typeof key.remoteJid !== 'string' || !key.id) return null;
  const chat = key.remoteJid;
  if (isStatusOrBroadcast(chat)) return null;
  const body = content(msg.message);
  if (!body) return null;
  const isGroup = chat.endsWith('@g.us');
  const raw = isGroup ? key.participant : chat;
  if (typeof raw !== 'string' || !raw) return null;
  let phone = normPhone(raw);
  const lid = normLid(raw);
  if (lid) {
    const told = phoneFromKey(key, isGroup);
    if (told) lidmap.learn(lid, told);
    phone = told || lidmap.get(lid);
  }
  const ts = Number(msg.messageTimestamp?.low ?? msg.messageTimestamp ?? 0);
  const frame = {
    type: 'message',
    id: key.id,
    chat,
    isGroup,
    sender: phone || lid || raw,
    senderPhone: phone ? phone.split('@')[0] : null,
    senderLid: lid,
    pushName: typeof msg.pushName === 'string' ? msg.pushName.slice(0, 100) : '',
    kind: body.kind,
    text: body.text,
    timestamp: Number.isFinite(ts) ? ts : 0,
  };
  if (body.fileName) frame.fileName = body.fileName;
  return { frame, media: body.media || null, mime: body.mime || null };
}

/** Split text into parts of at most limit characters, preferring paragraph, line, word ends. */
function splitText(text, limit = TEXT_LIMIT) {
  const parts = [];
  let rest = String(text);
  while (rest.length > limit) {
    const window = rest.slice(0, limit);
    let cut = Math.max(window.lastIndexOf('\n\n'), window.lastIndexOf('\n'));
    if (cut < limit / 2) cut = window.lastIndexOf(' ');
    if (cut < limit / 2) cut = limit;
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).replace(/^\s+/, '');
  }
  if (rest.length || parts.length === 0) parts.push(rest);
  return parts;
}

module.exports = { toFrame, splitText, unwrap, TEXT_LIMIT };
