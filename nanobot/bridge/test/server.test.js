'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { BridgeServer, tokenMatches, isLoopback } = require('../src/server');
const { PendingQueue } = require('../src/queue');
const { textMessage } = require('./fake-whatsapp');
const { TOKEN, startBridge, connect, authed, quietLog } = require('./helpers');

const ALICE = '4915112345678@s.whatsapp.net';

async function refused(t, send, expectCode) {
  const b = await startBridge();
  t.after(() => b.stop());
  b.sock.receive(textMessage({ id: 'm1', from: ALICE, text: 'secret chat' }));
  const ws = await connect(b.url);
  await send(ws);
  const closed = await ws.closed;
  assert.strictEqual(closed.code, expectCode);
  assert.deepStrictEqual(ws.frames, [], 'nothing may be sent before authentication');
  assert.ok(b.log.lines.some((l) => l.startsWith('warn') && /authentication/.test(l)), b.log.lines.join('\n'));
  assert.ok(!b.log.lines.join('\n').includes(TOKEN));
  return b;
}

test('no auth frame: closed after the timeout, nothing sent', (t) => refused(t, async () => {}, 4000));
test('wrong token: closed', (t) => refused(t, async (ws) => ws.sendJson({ type: 'auth', token: 'x'.repeat(TOKEN.length) }), 4001));
test('a prefix of the token: closed', (t) => refused(t, async (ws) => ws.sendJson({ type: 'auth', token: TOKEN.slice(0, -1) }), 4001));
test('token plus extra characters: closed', (t) => refused(t, async (ws) => ws.sendJson({ type: 'auth', token: TOKEN + 'x' }), 4001));
test('a first frame that is not auth: closed', (t) => refused(t, async (ws) => ws.sendJson({ type: 'status' }), 4001));
test('binary first frame: closed', (t) => refused(t, async (ws) => ws.send(Buffer.from(TOKEN)), 4001));
test('a late token: closed by the timeout before it arrives', (t) =>
  refused(t, async (ws) => {
    await new Promise((r) => setTimeout(r, 400));
    if (ws.readyState === ws.OPEN) ws.sendJson({ type: 'auth', token: TOKEN });
  }, 4000));

test('a browser (Origin header) cannot connect', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await connect(b.url, { headers: { Origin: 'http://evil.example' } });
  assert.strictEqual(ws.readyState, ws.CLOSED); // the upgrade was answered 401
  assert.deepStrictEqual(ws.frames, []);
});

test('tokenMatches is exact', () => {
  assert.ok(tokenMatches(TOKEN, TOKEN));
  assert.ok(!tokenMatches(TOKEN.slice(1), TOKEN));
  assert.ok(!tokenMatches(undefined, TOKEN));
  assert.ok(!tokenMatches('', TOKEN));
});

test('a non-loopback host is refused unless explicitly allowed', async () => {
  const base = { port: 0, token: TOKEN, queue: new PendingQueue(5, null, quietLog()), log: quietLog(), handlers: {} };
  for (const host of ['0.0.0.0', '::', '192.168.1.5', 'example.com']) {
    assert.throws(() => new BridgeServer({ ...base, host }), /refusing to listen/);
  }
  for (const host of ['127.0.0.1', '::1', 'localhost', '127.0.0.2']) assert.ok(isLoopback(host));
  assert.ok(new BridgeServer({ ...base, host: '0.0.0.0', allowNonLoopback: true }));
  assert.throws(() => new BridgeServer({ ...base, host: '127.0.0.1', token: '' }), /needs a token/);
});

test('a message and a send round trip', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await authed(b.url);
  b.sock.receive(textMessage({ id: 'm1', from: ALICE, text: 'hello bot' }));
  const m = await ws.next('message');
  assert.strictEqual(m.id, 'm1');
  assert.strictEqual(m.sender, ALICE);
  assert.strictEqual(m.senderPhone, '4915112345678');
  assert.strictEqual(m.chat, ALICE);
  assert.strictEqual(m.text, 'hello bot');
  ws.sendJson({ type: 'ack', id: 'm1' });
  ws.sendJson({ type: 'typing', to: ALICE, on: true });
  ws.sendJson({ type: 'send', id: 's1', to: ALICE, text: 'hi there' });
  const sent = await ws.next('sent');
  assert.deepStrictEqual([sent.id, sent.parts], ['s1', 1]);
  assert.deepStrictEqual(b.sock.sent, [{ to: ALICE, text: 'hi there' }]);
  assert.deepStrictEqual(b.sock.presence, [{ type: 'composing', to: ALICE }]);
  assert.strictEqual(b.queue.size, 0);
});

test('a long reply is split into several WhatsApp messages', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await authed(b.url);
  ws.sendJson({ type: 'send', id: 2, to: ALICE, text: ('word '.repeat(999) + '\n\n').repeat(2) });
  assert.strictEqual((await ws.next('sent')).parts, 3);
  assert.ok(b.sock.sent.every((s) => s.text.length <= 4000));
});

test('send while WhatsApp is down fails with a retryable error', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await authed(b.url);
  b.link.stop();
  b.link.state.state = 'reconnecting';
  ws.sendJson({ type: 'send', id: 's', to: ALICE, text: 'x' });
  const f = await ws.next('send_failed');
  assert.strictEqual(f.retryable, true);
  assert.match(f.error, /not connected/);
});

test('messages wait in the queue while nanobot is away, and until acked', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  b.sock.receive(textMessage({ id: 'a', from: ALICE, text: 'one' }), textMessage({ id: 'b', from: ALICE, text: 'two' }));
  await new Promise((r) => setTimeout(r, 50));
  assert.strictEqual(b.queue.size, 2);
  const first = await authed(b.url);
  assert.deepStrictEqual([(await first.next('message')).id, (await first.next('message')).id], ['a', 'b']);
  first.sendJson({ type: 'ack', id: 'a' });
  await new Promise((r) => setTimeout(r, 50));
  first.close();
  await first.closed;
  const second = await authed(b.url);
  assert.strictEqual((await second.next('message')).id, 'b'); // unacked: delivered again
  assert.strictEqual(second.frames.filter((f) => f.type === 'message').length, 1);
  const saved = JSON.parse(fs.readFileSync(path.join(b.dir, 'auth', 'bridge-queue.json'), 'utf8'));
  assert.deepStrictEqual(saved.map((m) => m.id), ['b']);
  assert.strictEqual(fs.statSync(path.join(b.dir, 'auth', 'bridge-queue.json')).mode & 0o777, 0o600);
});

test('the queue is bounded: the oldest message is dropped and logged', async (t) => {
  const b = await startBridge({ queueMax: 3 });
  t.after(() => b.stop());
  for (let i = 0; i < 5; i += 1) b.sock.receive(textMessage({ id: `q${i}`, from: ALICE, text: `n${i}` }));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepStrictEqual(b.queue.all().map((m) => m.id), ['q2', 'q3', 'q4']);
  assert.ok(b.log.lines.some((l) => /queue full/.test(l)));
});

test('two clients: a newer channel replaces the older; an observer sees status, not messages', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const old = await authed(b.url);
  const observer = await authed(b.url, 'observer');
  assert.strictEqual((await observer.frames[0]).status.state, 'open');
  const fresh = await authed(b.url);
  assert.strictEqual((await old.closed).code, 4002);
  b.sock.receive(textMessage({ id: 'x', from: ALICE, text: 'hi' }));
  assert.strictEqual((await fresh.next('message')).id, 'x');
  observer.sendJson({ type: 'send', id: 1, to: ALICE, text: 'no' });
  assert.match((await observer.next('error')).error, /observer/);
  assert.ok(!observer.frames.some((f) => f.type === 'message'));
  b.sock.close(428);
  assert.strictEqual((await observer.next('status')).state, 'reconnecting');
});

test('logged out: a clear state, no reconnect', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  const ws = await authed(b.url);
  b.sock.close(401);
  const s = await ws.next('status');
  assert.strictEqual(s.state, 'logged_out');
  assert.match(s.detail, /nanobot channels login whatsapp/);
  await new Promise((r) => setTimeout(r, 1200)); // longer than the first reconnect delay
  assert.strictEqual(b.sockets.length, 1, 'no reconnect after a logout');
  ws.sendJson({ type: 'send', id: 9, to: ALICE, text: 'x' });
  assert.strictEqual((await ws.next('send_failed')).retryable, false);
});

test('unlinked: the QR code goes to authenticated clients only', async (t) => {
  const b = await startBridge({ linked: false });
  t.after(() => b.stop());
  const ws = await authed(b.url);
  assert.strictEqual(ws.frames[0].status.state, 'qr');
  ws.sendJson({ type: 'status', id: 'st' });
  assert.strictEqual((await ws.next('status')).state, 'qr');
});

test('auth dir 0700 and its files 0600', async (t) => {
  const b = await startBridge();
  t.after(() => b.stop());
  assert.strictEqual(fs.statSync(path.join(b.dir, 'auth')).mode & 0o777, 0o700);
  assert.strictEqual(fs.statSync(path.join(b.dir, 'auth', 'creds.json')).mode & 0o777, 0o600);
});
