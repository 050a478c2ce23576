'use strict';
// Private files: directories 0700, files 0600, written atomically (temp file + rename).

const fs = require('fs');
const path = require('path');

function ensurePrivateDir(dir) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  return dir;
}

/** chmod every regular file directly in dir to 0600 (Baileys writes its key files itself). */
function tightenFiles(dir) {
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = fs.lstatSync(p);
    if (st.isFile() && (st.mode & 0o077) !== 0) fs.chmodSync(p, 0o600);
  }
}

function writePrivate(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function readJson(file, fallback) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return fallback;
    throw new Error(`${file} is unreadable (${e.message}); move it aside and restart the bridge`);
  }
}

module.exports = { ensurePrivateDir, tightenFiles, writePrivate, readJson };
