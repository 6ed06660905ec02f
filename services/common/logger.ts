// pino JSON logs, one event per line, to stderr (stdout stays free for command output).

import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(name: string, level = process.env.RAFTKV_LOG_LEVEL ?? "info", bindings: Record<string, unknown> = {}): Logger {
  return pino({ name, level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: false }));
}
