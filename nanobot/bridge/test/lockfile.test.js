'use strict';
// Dependency pins the reference documents require, checked from the committed lock file.
const test = require('node:test');
const assert = require('node:assert');
const lock = require('../package-lock.json');

function atLeast(version, min) {
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i += 1) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
}

test('every ws in the tree is >= 8.17.1', () => {
  const found = Object.entries(lock.packages).filter(([p]) => /(^|\/)node_modules\/ws$/.test(p));
  assert.ok(found.length >= 1);
  for (const [p, info] of found) assert.ok(atLeast(info.version, '8.17.1'), `${p} is ${info.version}`);
});

test('nothing is fetched from GitHub (only the registry is reachable here)', () => {
  for (const [p, info] of Object.entries(lock.packages)) {
    if (p && info.resolved) assert.match(info.resolved, /^https:\/\/registry\.npmjs\.org\//, p);
  }
});
