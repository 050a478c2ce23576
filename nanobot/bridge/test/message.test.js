'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const { toFrame, splitText } = require('../src/message');
const { LidMap } = require('../src/lidmap');
const { textMessage } = require('./fake-whatsapp');
const { startBridge, authed, quietLog } = require('./helpers');

const PHONE = '4915112345678@s.whatsapp.net';
const LID = '123456789012345@lid';
const GROUP = '120363000000000001@g.us';
const map = () => new LidMap(null, quietLog());

test('own messages, status broadcasts, newsletters and empty content are ignored', () => {
  const m = map();
  assert.strictEqual(toFrame({ ...textMessage({ id: '1', from: PHONE, text: 'x' }), key: { remoteJid: PHONE, id: '1', fromMe: true } }, m), null);
  assert.strictEqual(toFrame(textMessage({ id: '2', from: 'status@broadcast', text: 'x', participant: PHONE }), m), null);
  assert.strictEqual(toFrame(textMessage({ id: '3', from: '1203@newsletter', text: 'x' }), m), null);
  assert.strictEqual(toFrame({ key: { remoteJid: PHONE, id: '4' }, message: { reactionMessage: { text: '👍' } } }, m), null);
});

test('captions of image, video and document; extended and ephemeral text', () => {
  const m = map();
  const key = { remoteJid: PHONE, id: 'c', fromMe: false };
  const frame = (message) => toFrame({ key, message }, m).frame;
  assert.deepStrictEqual([frame({ imageMessage: { caption: 'look' } }).kind, frame({ imageMessage: { caption: 'look' } }).text], ['image', 'look']);
  assert.strictEqual(frame({ videoMessage: { caption: 'clip' } }).text, 'clip');
  const doc = frame({ documentWithCaptionMessage: { message: { documentMessage: { caption: 'cv', fileName: 'cv.pdf' } } } });
  assert.deepStrictEqual([doc.kind, doc.text, doc.fileName], ['document', 'cv', 'cv.pdf']);
  assert.strictEqual(frame({ extendedTextMessage: { text: 'link https://x' } }).text, 'link https://x');
  assert.strictEqual(frame({ ephemeralMessage: { message: { conversation: 'vanishing' } } }).text, 'vanishing');
});

test('group messages carry the participant as the sender', () => {
  const { frame } = toFrame(textMessage({ id: 'g', from: GROUP, participant: PHONE, text: 'hi all' }), map());
  assert.deepStrictEqual([frame.chat, frame.sender, frame.isGroup], [GROUP, PHONE, true]);
});

test('a LID sender is resolved from the key, then remembered', () => {
  const m = map();
  const told = toFrame(textMessage({ id: 'l1', from: LID, text: 'x', key: { senderPn: '4915112345678@s.whatsapp.net' } }), m).frame;
  assert.deepStrictEqual([told.sender, told.senderPhone, told.senderLid, told.chat], [PHONE, '4915112345678', LID, LID]);
  const later = toFrame(textMessage({ id: 'l2', from: '123456789012345:7@lid', text: 'y' }), m).frame;
  assert.strictEqual(later.sender, PHONE);
  const group = toFrame(textMessage({ id: 'l3', from: GROUP, participant: '999@lid', text: 'z', key: { participantAlt: '4930111@s.whatsapp.net' } }), m).frame;
  assert.strictEqual(group.sender, '4930111@s.whatsapp.net');
});

test('an unresolved LID stays a LID, without a phone number', () => {
  const { frame } = toFrame(textMessage({ id: 'u', from: '555@lid', text: 'who am i' }), map());
  assert.deepStrictEqual([frame.sender, frame.senderPhone, frame.senderLid], ['555@lid', null, '555@lid']);
});

test('the LID map learns from WhatsApp events and survives a restart', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await authed(b.url);
  b.sock.ev.emit('chats.phoneNumberShare', { lid: LID, jid: PHONE });
  b.sock.ev.emit('contacts.upsert', [{ id: '4930222@s.whatsapp.net', lid: '777@lid' }]);
  b.sock.ev.emit('lid-mapping.update', { lid: '888@lid', pn: '4930333@s.whatsapp.net' });
  b.sock.receive(textMessage({ id: 'r1', from: LID, text: 'a' }), textMessage({ id: 'r2', from: '777@lid', text: 'b' }), textMessage({ id: 'r3', from: '888@lid', text: 'c' }));
  const senders = [(await ws.next('message')).sender, (await ws.next('message')).sender, (await ws.next('message')).sender];
  assert.deepStrictEqual(senders, [PHONE, '4930222@s.whatsapp.net', '4930333@s.whatsapp.net']);
  const file = `${b.dir}/auth/lid-map.json`;
  assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600);
  assert.strictEqual(new LidMap(file, quietLog()).get('777@lid'), '4930222@s.whatsapp.net');
});

test('a voice note is saved (0600) and marked', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await authed(b.url);
  const audio = Buffer.from('OggS fake opus');
  b.sock.receive({
    key: { remoteJid: PHONE, id: 'v1', fromMe: false },
    message: { audioMessage: { ptt: true, mimetype: 'audio/ogg; codecs=opus', fileLength: audio.length, fakeData: audio.toString('base64') } },
  });
  const m = await ws.next('message');
  assert.strictEqual(m.kind, 'voice');
  assert.strictEqual(m.media.length, 1);
  assert.deepStrictEqual(fs.readFileSync(m.media[0].path), audio);
  assert.strictEqual(fs.statSync(m.media[0].path).mode & 0o777, 0o600);
});

test('splitText keeps parts under the limit and loses no words', () => {
  const text = Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ');
  const parts = splitText(text, 100);
  assert.ok(parts.every((p) => p.length <= 100));
  assert.strictEqual(parts.join(' '), text);
  assert.deepStrictEqual(splitText('short'), ['short']);
  assert.ok(splitText('x'.repeat(250), 100).every((p) => p.length <= 100));
});
