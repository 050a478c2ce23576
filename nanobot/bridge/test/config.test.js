'use strict';
// The token file rule: nobody else may read it; in systemd's credentials directory (0440 on
// Debian 13's systemd 257) a group bit is accepted, a bit for others never.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { loadConfig, ConfigError } = require('../src/config');
const { TOKEN, tmpdir } = require('./helpers');

function tokenFile(dir, mode) {
  const file = path.join(dir, 'whatsapp-bridge-token');
  fs.writeFileSync(file, `${TOKEN}\n`);
  fs.chmodSync(file, mode);
  return file;
}

test('a group-readable token file is refused outside the credentials directory', () => {
  const file = tokenFile(tmpdir(), 0o640);
  assert.throws(() => loadConfig([], { BRIDGE_TOKEN_FILE: file }), (e) => e instanceof ConfigError && /chmod 600/.test(e.message));
  assert.throws(() => loadConfig([], { BRIDGE_TOKEN_FILE: file, CREDENTIALS_DIRECTORY: tmpdir() }), ConfigError);
});

test("systemd's credentials directory: 0440 accepted, readable by others refused", () => {
  const creds = tmpdir();
  const file = tokenFile(creds, 0o440);
  assert.strictEqual(loadConfig([], { BRIDGE_TOKEN_FILE: file, CREDENTIALS_DIRECTORY: creds }).token, TOKEN);
  fs.chmodSync(file, 0o444);
  assert.throws(() => loadConfig([], { BRIDGE_TOKEN_FILE: file, CREDENTIALS_DIRECTORY: creds }), ConfigError);
});
