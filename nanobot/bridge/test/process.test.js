'use strict';
// The bridge as a process: how it refuses to start, and that it starts and serves with the fake.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { TOKEN, tmpdir, connect } = require('./helpers');

const INDEX = path.join(__dirname, '..', 'src', 'index.js');

function run(args, env) {
  const dir = tmpdir();
  return spawnSync(process.execPath, [INDEX, ...args], {
    env: { PATH: process.env.PATH, NANOBOT_HOME: dir, BRIDGE_PORT: '0', ...env },
    encoding: 'utf8',
    timeout: 10000,
  });
}

test('refuses to start without a token, with a short token, or with one on the command line', () => {
  let r = run([], {});
  assert.strictEqual(r.status, 2);
  assert.match(r.stderr, /no token: set BRIDGE_TOKEN or BRIDGE_TOKEN_FILE/);
  r = run([], { BRIDGE_TOKEN: 'short' });
  assert.match(r.stderr, /shorter than 16/);
  r = run([`--token=${TOKEN}`], { BRIDGE_TOKEN: TOKEN });
  assert.strictEqual(r.status, 2);
  assert.match(r.stderr, /never taken from the command line/);
  assert.ok(!r.stderr.includes(TOKEN));
});

test('refuses a token file others can read', () => {
  const file = path.join(tmpdir(), 'token');
  fs.writeFileSync(file, TOKEN, { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  const r = run([], { BRIDGE_TOKEN_FILE: file });
  assert.strictEqual(r.status, 2);
  assert.match(r.stderr, /chmod 600/);
});

test('refuses a non-loopback host without the unsafe flag', () => {
  const r = run([], { BRIDGE_TOKEN: TOKEN, BRIDGE_HOST: '0.0.0.0' });
  assert.strictEqual(r.status, 1);
  assert.match(r.stderr, /refusing to listen on 0\.0\.0\.0/);
});

test('starts from a 0600 token file and serves nanobot (fake WhatsApp)', async (t) => {
  const dir = tmpdir();
  const file = path.join(dir, 'token');
  fs.writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
  const child = spawn(process.execPath, [INDEX], {
    env: { PATH: process.env.PATH, NANOBOT_HOME: path.join(dir, 'home'), BRIDGE_PORT: '0', BRIDGE_TOKEN_FILE: file, BRIDGE_FAKE_WHATSAPP: dir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 8000;
  let m;
  while (!(m = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(err)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(m, err);
  const ws = await connect(`ws://127.0.0.1:${m[1]}`);
  ws.sendJson({ type: 'auth', token: TOKEN });
  const ready = await ws.next('ready', 5000);
  assert.strictEqual(ready.protocol, 1);
  const auth = path.join(dir, 'home', 'whatsapp-auth');
  assert.strictEqual(fs.statSync(auth).mode & 0o777, 0o700);
  for (const name of fs.readdirSync(auth)) assert.strictEqual(fs.statSync(path.join(auth, name)).mode & 0o777, 0o600, name);
  ws.close();
  child.kill('SIGTERM');
  const [code] = await new Promise((r) => child.on('exit', (...a) => r(a)));
  assert.strictEqual(code, 0);
  assert.ok(!err.includes(TOKEN));
});
