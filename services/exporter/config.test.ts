import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CommanderError } from "commander";
import { ConfigError, EXPORTER_DEFAULTS, exporterCommand, parseExporterConfig } from "./config.js";

/** Parses with commander's own output silenced (usage errors are asserted, not printed). */
function parse(argv: string[], env: Record<string, string> = {}) {
  const cmd = exporterCommand().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  return parseExporterConfig(argv, env, cmd);
}

describe("exporter configuration", () => {
  it("defaults to the documented values (docs/configuration.md)", () => {
    assert.deepEqual(parse([]), {
      statusUrl: "http://127.0.0.1:8080/status",
      port: 9100,
      host: "0.0.0.0",
      timeoutMs: 2000,
      logLevel: "info",
    });
    assert.deepEqual(parse([]), EXPORTER_DEFAULTS);
  });

  it("reads every setting from its environment variable", () => {
    const c = parse([], {
      RAFTKV_STATUS_URL: "http://node:8081/status",
      RAFTKV_EXPORTER_PORT: "9101",
      RAFTKV_EXPORTER_HOST: "127.0.0.1",
      RAFTKV_EXPORTER_TIMEOUT_MS: "1500",
      RAFTKV_LOG_LEVEL: "debug",
    });
    assert.deepEqual(c, { statusUrl: "http://node:8081/status", port: 9101, host: "127.0.0.1", timeoutMs: 1500, logLevel: "debug" });
  });

  it("lets flags win over environment variables", () => {
    const c = parse(["--status-url", "http://a:1/status", "--port", "9200", "--host", "::1", "--timeout-ms", "700", "--log-level", "warn"], {
      RAFTKV_STATUS_URL: "http://b:2/status",
      RAFTKV_EXPORTER_PORT: "9101",
      RAFTKV_EXPORTER_HOST: "127.0.0.1",
      RAFTKV_EXPORTER_TIMEOUT_MS: "1500",
      RAFTKV_LOG_LEVEL: "debug",
    });
    assert.deepEqual(c, { statusUrl: "http://a:1/status", port: 9200, host: "::1", timeoutMs: 700, logLevel: "warn" });
  });

  it("treats an empty environment variable as unset", () => {
    assert.equal(parse([], { RAFTKV_EXPORTER_PORT: "" }).port, 9100);
  });

  it("rejects bad values with a message naming the setting as the user gave it", () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [[], { RAFTKV_EXPORTER_PORT: "abc" }, /^RAFTKV_EXPORTER_PORT: must be an integer in 0\.\.65535, got "abc"$/],
      [["--port", "70000"], {}, /^--port: must be an integer in 0\.\.65535, got "70000"$/],
      [["--port", "-1"], {}, /^--port: must be an integer/],
      [["--port", "91.5"], {}, /^--port: must be an integer/],
      [[], { RAFTKV_EXPORTER_TIMEOUT_MS: "0" }, /^RAFTKV_EXPORTER_TIMEOUT_MS: must be an integer in 1\.\.120000/],
      [["--timeout-ms", "2s"], {}, /^--timeout-ms: must be an integer/],
      [[], { RAFTKV_STATUS_URL: "127.0.0.1:8080/status" }, /^RAFTKV_STATUS_URL: must be an absolute http:\/\/ or https:\/\/ URL/],
      [["--status-url", "ftp://x/status"], {}, /^--status-url: must be an absolute http/],
      [["--status-url", "not a url"], {}, /^--status-url: must be an absolute http/],
      [[], { RAFTKV_LOG_LEVEL: "verbose" }, /^RAFTKV_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"$/],
      [["--host", "a b"], {}, /^--host: must be an address or host name/],
    ];
    for (const [argv, env, expected] of cases) {
      assert.throws(() => parse(argv, env), (err: unknown) => err instanceof ConfigError && expected.test(err.message), `${argv} ${JSON.stringify(env)}`);
    }
  });

  it("refuses unknown flags and stray arguments", () => {
    assert.throws(() => parse(["--prot", "9100"]), (err: unknown) => err instanceof CommanderError && err.code === "commander.unknownOption");
    assert.throws(() => parse(["extra"]), (err: unknown) => err instanceof CommanderError && err.code === "commander.excessArguments");
  });

  it("documents every flag with its environment variable and default in --help", () => {
    const help = exporterCommand().helpInformation();
    for (const s of ["--status-url", "RAFTKV_STATUS_URL", "--port", "RAFTKV_EXPORTER_PORT", "--host", "RAFTKV_EXPORTER_HOST", "--timeout-ms", "RAFTKV_EXPORTER_TIMEOUT_MS", "--log-level", "RAFTKV_LOG_LEVEL", "default 9100", "default 2000"]) {
      assert.ok(help.includes(s), s);
    }
  });
});
