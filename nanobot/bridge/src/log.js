'use strict';
// One-line logs on stderr ("level message"); journald adds the time. Never pass secrets here.

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 };

function printable(value) {
  return String(value).replace(/[\x00-\x1f\x7f]/g, '?');
}

function makeLogger(level = 'info', sink = (line) => process.stderr.write(line + '\n'), prefix = '') {
  const min = LEVELS[level] ?? LEVELS.info;
  const logger = { level };
  for (const name of Object.keys(LEVELS)) {
    if (name === 'silent') continue;
    logger[name] = (...args) => {
      if (LEVELS[name] < min) return;
      // pino style (obj, msg) or plain (msg)
      const parts = args.map((a) => (typeof a === 'string' ? a : safeJson(a)));
      sink(`${name} ${prefix}${printable(parts.join(' '))}`);
    };
  }
  logger.child = (bindings) => makeLogger(level, sink, bindings && bindings.class ? `[${bindings.class}] ` : prefix);
  return logger;
}

function safeJson(value) {
  if (value instanceof Error) return value.message;
  try {
    return JSON.stringify(value, (k, v) => (/token|key|secret|creds/i.test(k) ? '[hidden]' : v))
      .slice(0, 500);
  } catch {
    return String(value);
  }
}

module.exports = { makeLogger, printable };
