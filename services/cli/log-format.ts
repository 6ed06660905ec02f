// One short line per pino JSON log event, for `raftkv cluster up`: local time, level, message and
// a few of the event's fields; role changes (the word LEADER) stand out. Lines that are not pino
// JSON pass through unchanged.

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

/** Fields every line has or that say nothing in a local cluster. */
const SKIP = new Set(["level", "time", "msg", "pid", "hostname", "name", "v", "service", "node", "nodeId"]);

const MAX_EXTRA = 160;

export const ANSI = {
  reset: "\x1b[0m",
  bold: "\x1b[1m",
  dim: "\x1b[2m",
  red: "\x1b[31m",
  green: "\x1b[32m",
  yellow: "\x1b[33m",
  blue: "\x1b[34m",
  magenta: "\x1b[35m",
  cyan: "\x1b[36m",
  inverse: "\x1b[7m",
} as const;

/** Colours of the per-process prefixes, in order. */
export const PREFIX_COLOURS = [ANSI.cyan, ANSI.magenta, ANSI.green, ANSI.blue, ANSI.yellow, ANSI.red];

export interface LogFormatOptions {
  color: boolean;
}

function levelName(level: unknown): string {
  if (typeof level === "number") return LEVELS[level] ?? String(level);
  if (typeof level === "string") return level.toUpperCase();
  return "";
}

function clock(time: unknown): string {
  const d = typeof time === "number" || typeof time === "string" ? new Date(time) : undefined;
  if (!d || Number.isNaN(d.getTime())) return "";
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function fieldValue(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (typeof v === "number" || typeof v === "boolean" || v === null) return String(v);
  if (v && typeof v === "object" && "message" in v && typeof (v as { message: unknown }).message === "string") {
    return JSON.stringify((v as { message: string }).message);
  }
  return JSON.stringify(v);
}

/** The line as one short human line (no prefix), or the line itself when it is not pino JSON. */
export function formatLogLine(line: string, opts: LogFormatOptions): string {
  const trimmed = line.trim();
  if (!trimmed.startsWith("{")) return line;
  let ev: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(trimmed);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return line;
    ev = parsed as Record<string, unknown>;
  } catch {
    return line;
  }
  if (!("msg" in ev) && !("level" in ev)) return line;
  const level = levelName(ev.level);
  const msg = typeof ev.msg === "string" ? ev.msg : ev.msg === undefined ? "" : JSON.stringify(ev.msg);
  let extra = "";
  for (const [k, v] of Object.entries(ev)) {
    if (SKIP.has(k) || v === undefined) continue;
    const part = `${k}=${fieldValue(v)}`;
    if (extra.length + part.length + 1 > MAX_EXTRA) {
      extra += " …";
      break;
    }
    extra += ` ${part}`;
  }
  const time = clock(ev.time);
  const leader = msg.includes("LEADER");
  if (!opts.color) return `${time ? `${time} ` : ""}${level.padEnd(5)} ${msg}${extra}`;
  const levelColour = level === "WARN" ? ANSI.yellow : level === "ERROR" || level === "FATAL" ? ANSI.red : level === "INFO" ? ANSI.green : ANSI.dim;
  const body = leader ? `${ANSI.bold}${ANSI.yellow}${msg}${ANSI.reset}` : msg;
  return `${ANSI.dim}${time}${ANSI.reset} ${levelColour}${level.padEnd(5)}${ANSI.reset} ${body}${ANSI.dim}${extra}${ANSI.reset}`;
}

/** Whether to colour output written to this stream (a TTY, unless NO_COLOR; FORCE_COLOR wins). */
export function useColour(stream: { isTTY?: boolean }, env: Record<string, string | undefined>): boolean {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0") return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  return stream.isTTY === true;
}
