'use strict';
// The bridge's settings: environment and flags. The token never comes from the command line.

const fs = require('fs');
const os = require('os');
const path = require('path');

const USAGE = `usage: node src/index.js [--login] [--unsafe-allow-non-loopback]

Environment:
  BRIDGE_TOKEN or BRIDGE_TOKEN_FILE  shared secret nanobot sends first (file: mode 0600 or stricter)
  BRIDGE_HOST (127.0.0.1)  BRIDGE_PORT (3001)  NANOBOT_HOME (~/.nanobot)
  AUTH_DIR (NANOBOT_HOME/whatsapp-auth)  BRIDGE_MEDIA_DIR (NANOBOT_HOME/media/whatsapp)
  BRIDGE_QUEUE_MAX (1000)  BRIDGE_LOG_LEVEL (info)
--login  link this device: show the QR code here, exit once linked (no token, no server)`;

class ConfigError extends Error {}

const MIN_TOKEN = 16;

/**
 * The token from a file nobody else can read. In systemd's per-unit credentials directory
 * (LoadCredential*=, $CREDENTIALS_DIRECTORY) a group bit is accepted: Debian 13's systemd 257
 * makes credentials 0440.
 */
function readTokenFile(file, credentialsDir) {
  const inCredentials = Boolean(credentialsDir) && path.dirname(path.resolve(file)) === path.resolve(credentialsDir);
  let st;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new ConfigError(`BRIDGE_TOKEN_FILE ${file} cannot be read (${e.code}); create it with mode 0600`);
  }
  if ((st.mode & (inCredentials ? 0o007 : 0o077)) !== 0) {
    throw new ConfigError(`BRIDGE_TOKEN_FILE ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`);
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/** Settings from argv (without node and the script) and env; throws ConfigError naming the fix. */
function loadConfig(argv, env) {
  const flags = new Set();
  for (const arg of argv) {
    if (/^--?(token|bridge-token)/i.test(arg)) {
      throw new ConfigError('the token is never taken from the command line (other users can read it there); set BRIDGE_TOKEN or BRIDGE_TOKEN_FILE');
    }
    if (!['--login', '--unsafe-allow-non-loopback', '--help'].includes(arg)) {
      throw new ConfigError(`unknown argument ${arg.slice(0, 40)}\n${USAGE}`);
    }
    flags.add(arg);
  }
  const home = env.NANOBOT_HOME || path.join(os.homedir(), '.nanobot');
  const port = Number(env.BRIDGE_PORT ?? 3001);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`BRIDGE_PORT must be a port number, not ${String(env.BRIDGE_PORT).slice(0, 20)}`);
  }
  const queueMax = Number(env.BRIDGE_QUEUE_MAX ?? 1000);
  if (!Number.isInteger(queueMax) || queueMax < 1) throw new ConfigError('BRIDGE_QUEUE_MAX must be a positive integer');
  const cfg = {
    help: flags.has('--help'),
    login: flags.has('--login'),
    allowNonLoopback: flags.has('--unsafe-allow-non-loopback'),
    host: env.BRIDGE_HOST || '127.0.0.1',
    port,
    home,
    authDir: env.AUTH_DIR || path.join(home, 'whatsapp-auth'),
    mediaDir: env.BRIDGE_MEDIA_DIR || path.join(home, 'media', 'whatsapp'),
    queueMax,
    logLevel: env.BRIDGE_LOG_LEVEL || 'info',
    fakeDir: env.BRIDGE_FAKE_WHATSAPP || '',
    token: '',
  };
  if (cfg.help || cfg.login) return cfg;
  if (env.BRIDGE_TOKEN_FILE) cfg.token = readTokenFile(env.BRIDGE_TOKEN_FILE, env.CREDENTIALS_DIRECTORY);
  else cfg.token = (env.BRIDGE_TOKEN || '').trim();
  if (!cfg.token) {
    throw new ConfigError('no token: set BRIDGE_TOKEN or BRIDGE_TOKEN_FILE (nanobot sends the same value, channels.whatsapp.bridgeToken)');
  }
  if (cfg.token.length < MIN_TOKEN) {
    throw new ConfigError(`the token is shorter than ${MIN_TOKEN} characters; generate one with: openssl rand -hex 32`);
  }
  return cfg;
}

module.exports = { loadConfig, ConfigError, USAGE };
