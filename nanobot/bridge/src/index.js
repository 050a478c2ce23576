#!/usr/bin/env node
'use strict';
// nanobot's WhatsApp bridge: Baileys ↔ an authenticated WebSocket on 127.0.0.1 (PROTOCOL.md).

const path = require('path');
const { loadConfig, ConfigError, USAGE } = require('./config');
const { makeLogger } = require('./log');
const { ensurePrivateDir } = require('./files');
const { PendingQueue } = require('./queue');
const { LidMap } = require('./lidmap');
const { BridgeServer } = require('./server');
const { WhatsAppLink, pruneMedia } = require('./whatsapp');

const MEDIA_MAX_AGE_MS = 24 * 3600 * 1000;

/** The WhatsApp library: real Baileys, or the test fake when BRIDGE_FAKE_WHATSAPP names a dir. */
function whatsappBackend(cfg, log) {
  const baileys = require('@whiskeysockets/baileys');
  if (cfg.fakeDir) {
    log.warn(`BRIDGE_FAKE_WHATSAPP is set: using the fake WhatsApp of the tests (${cfg.fakeDir})`);
    const fake = require('../test/fake-whatsapp').controlledFake(cfg.fakeDir);
    return { makeSocket: fake.makeSocket, useAuthState: baileys.useMultiFileAuthState, download: fake.download };
  }
  const silent = baileysLogger();
  return {
    makeSocket: baileys.default || baileys.makeWASocket,
    useAuthState: baileys.useMultiFileAuthState,
    download: (msg, sock) =>
      baileys.downloadMediaMessage(msg, 'buffer', {}, { logger: silent, reuploadRequest: sock.updateMediaMessage }),
  };
}

function baileysLogger() {
  return makeLogger(process.env.BRIDGE_BAILEYS_LOG || 'warn', undefined, '[baileys] ');
}

async function main() {
  const cfg = loadConfig(process.argv.slice(2), process.env);
  delete process.env.BRIDGE_TOKEN; // children never inherit it
  if (cfg.help) {
    console.log(USAGE);
    return;
  }
  process.umask(0o077);
  const log = makeLogger(cfg.logLevel);
  ensurePrivateDir(cfg.authDir);
  const lidmap = new LidMap(path.join(cfg.authDir, 'lid-map.json'), log);
  const link = new WhatsAppLink({
    ...whatsappBackend(cfg, log),
    baileysLog: baileysLogger(),
    authDir: cfg.authDir,
    mediaDir: cfg.mediaDir,
    lidmap,
    log,
  });
  if (cfg.login) return login(link, log);

  const queue = new PendingQueue(cfg.queueMax, path.join(cfg.authDir, 'bridge-queue.json'), log);
  const server = new BridgeServer({
    host: cfg.host,
    port: cfg.port,
    token: cfg.token,
    allowNonLoopback: cfg.allowNonLoopback,
    queue,
    log,
    handlers: {
      send: (to, text) => link.sendText(to, text),
      typing: (to, on) => link.typing(to, on),
      status: () => link.status(),
    },
  });
  link.on('message', (frame) => server.deliver(frame));
  link.on('status', (s) => server.broadcast({ type: 'status', ...s }));
  link.on('qr', (qr) => server.broadcast({ type: 'qr', qr }));
  await server.listen();
  if (queue.size) log.info(`${queue.size} message(s) from before the restart wait for nanobot`);
  pruneMedia(cfg.mediaDir, MEDIA_MAX_AGE_MS);
  const pruner = setInterval(() => pruneMedia(cfg.mediaDir, MEDIA_MAX_AGE_MS), 3600 * 1000);
  pruner.unref();
  const shutdown = async (sig) => {
    log.info(`${sig}: shutting down`);
    link.stop();
    await server.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  await link.start();
}

function login(link, log) {
  const qrcode = require('qrcode-terminal');
  link.on('qr', (qr) => {
    console.log('\nScan this QR code with WhatsApp → Settings → Linked devices → Link a device:\n');
    qrcode.generate(qr, { small: true });
  });
  link.on('status', (s) => {
    if (s.state === 'open') {
      console.log(`\nLinked${s.me ? ` as ${s.me.split('@')[0]}` : ''}. You can start the gateway now.`);
      setTimeout(() => {
        link.stop();
        process.exit(0);
      }, 2000); // let Baileys write the last credentials
    } else if (s.state === 'logged_out') {
      console.error('WhatsApp refused the link (logged out). Remove the auth directory and try again.');
      process.exit(1);
    }
  });
  log.info('linking: waiting for WhatsApp');
  return link.start();
}

main().catch((e) => {
  if (e instanceof ConfigError) {
    process.stderr.write(`nanobot-whatsapp-bridge: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`nanobot-whatsapp-bridge: ${e.stack || e}\n`);
  process.exit(1);
});
