// raftkv-exporter settings: flags win over environment variables, which win over defaults
// (docs/configuration.md). A bad value is an error naming the setting, before anything starts.

import { Command, Option } from "commander";

export interface ExporterConfig {
  /** The node's status endpoint. */
  statusUrl: string;
  /** Port of /metrics and /livez (0 = any free port, for tests). */
  port: number;
  /** Bind address. */
  host: string;
  /** Deadline of one /status fetch; keep it below the scrape timeout. */
  timeoutMs: number;
  logLevel: string;
}

export const EXPORTER_DEFAULTS: ExporterConfig = {
  statusUrl: "http://127.0.0.1:8080/status",
  port: 9100,
  host: "0.0.0.0",
  timeoutMs: 2000,
  logLevel: "info",
};

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export class ConfigError extends Error {
  override name = "ConfigError";
}

interface Setting {
  key: keyof ExporterConfig;
  env: string;
  flag: string;
  /** commander's camelCase attribute for the flag. */
  attr: string;
  help: string;
}

const SETTINGS: readonly Setting[] = [
  { key: "statusUrl", env: "RAFTKV_STATUS_URL", flag: "--status-url <url>", attr: "statusUrl", help: "the node's status endpoint" },
  { key: "port", env: "RAFTKV_EXPORTER_PORT", flag: "--port <port>", attr: "port", help: "port of /metrics and /livez" },
  { key: "host", env: "RAFTKV_EXPORTER_HOST", flag: "--host <address>", attr: "host", help: "bind address" },
  { key: "timeoutMs", env: "RAFTKV_EXPORTER_TIMEOUT_MS", flag: "--timeout-ms <ms>", attr: "timeoutMs", help: "fetch timeout of /status (keep it below the scrape timeout)" },
  { key: "logLevel", env: "RAFTKV_LOG_LEVEL", flag: "--log-level <level>", attr: "logLevel", help: `pino log level (${LOG_LEVELS.join(", ")})` },
];

/** The `raftkv-exporter` command line (used for --help and for parsing). */
export function exporterCommand(): Command {
  const cmd = new Command("raftkv-exporter")
    .description(
      "Metrics sidecar of a raftkv node: on each scrape of /metrics it reads the node's GET /status and " +
        "serves it as Prometheus text 0.0.4 or OpenMetrics 1.0 (by the Accept header). /livez answers while the process runs.",
    )
    .helpOption("-h, --help", "show this help")
    .allowExcessArguments(false);
  for (const s of SETTINGS) {
    cmd.addOption(new Option(s.flag, `${s.help} [env ${s.env}, default ${String(EXPORTER_DEFAULTS[s.key])}]`));
  }
  return cmd;
}

function setting(key: keyof ExporterConfig): Setting {
  return SETTINGS.find((s) => s.key === key)!;
}

function bad(key: keyof ExporterConfig, fromFlag: boolean, raw: string, why: string): never {
  const s = setting(key);
  throw new ConfigError(`${fromFlag ? s.flag.split(" ")[0] : s.env}: ${why}, got ${JSON.stringify(raw)}`);
}

function integer(key: keyof ExporterConfig, fromFlag: boolean, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw.trim())) bad(key, fromFlag, raw, `must be an integer in ${min}..${max}`);
  const n = Number(raw.trim());
  if (n < min || n > max) bad(key, fromFlag, raw, `must be an integer in ${min}..${max}`);
  return n;
}

/**
 * Parses `argv` (without node and the script: process.argv.slice(2)) against `env`.
 * Throws ConfigError for a bad value, and commander's CommanderError for unknown flags and
 * --help (code "commander.helpDisplayed"); the caller decides how to exit.
 */
export function parseExporterConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  cmd: Command = exporterCommand(),
): ExporterConfig {
  cmd.exitOverride();
  cmd.parse([...argv], { from: "user" });
  const opts = cmd.opts<Record<string, string | undefined>>();
  const raw = (key: keyof ExporterConfig): { value: string; fromFlag: boolean } | undefined => {
    const s = setting(key);
    const flag = opts[s.attr];
    if (flag !== undefined) return { value: flag, fromFlag: true };
    const e = env[s.env];
    if (e !== undefined && e !== "") return { value: e, fromFlag: false };
    return undefined;
  };

  const config: ExporterConfig = { ...EXPORTER_DEFAULTS };

  const url = raw("statusUrl");
  if (url) {
    let u: URL | undefined;
    try {
      u = new URL(url.value);
    } catch {
      bad("statusUrl", url.fromFlag, url.value, "must be an absolute http:// or https:// URL");
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") bad("statusUrl", url.fromFlag, url.value, "must be an absolute http:// or https:// URL");
    config.statusUrl = url.value;
  }
  const port = raw("port");
  if (port) config.port = integer("port", port.fromFlag, port.value, 0, 65535);
  const host = raw("host");
  if (host) {
    if (host.value.trim() === "" || /\s/.test(host.value)) bad("host", host.fromFlag, host.value, "must be an address or host name");
    config.host = host.value;
  }
  const timeout = raw("timeoutMs");
  if (timeout) config.timeoutMs = integer("timeoutMs", timeout.fromFlag, timeout.value, 1, 120_000);
  const level = raw("logLevel");
  if (level) {
    if (!(LOG_LEVELS as readonly string[]).includes(level.value)) bad("logLevel", level.fromFlag, level.value, `must be one of ${LOG_LEVELS.join(", ")}`);
    config.logLevel = level.value;
  }
  return config;
}
