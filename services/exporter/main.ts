// raftkv-exporter: the metrics sidecar process. Wiring only: config -> logger -> server -> signals.
//   node --import tsx services/exporter/main.ts [--status-url URL] [--port 9100] [--host 0.0.0.0]
//        [--timeout-ms 2000] [--log-level info]      (or the RAFTKV_* environment variables)

import { CommanderError } from "commander";
import { pino } from "pino";
import { ConfigError, exporterCommand, parseExporterConfig, type ExporterConfig } from "./config.js";
import { startExporterServer } from "./server.js";

async function main(): Promise<void> {
  let config: ExporterConfig;
  try {
    config = parseExporterConfig(process.argv.slice(2), process.env, exporterCommand());
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the help or the usage error.
      process.exit(err.code === "commander.helpDisplayed" || err.code === "commander.help" ? 0 : 2);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`raftkv-exporter: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  const logger = pino({ level: config.logLevel, base: { service: "raftkv-exporter", pid: process.pid } });
  let running;
  try {
    running = await startExporterServer(config, logger);
  } catch (err) {
    logger.fatal({ err, host: config.host, port: config.port }, "cannot listen");
    process.exit(1);
  }
  logger.info({ metrics: `${running.url}/metrics`, statusUrl: config.statusUrl, timeoutMs: config.timeoutMs }, "raftkv-exporter listening");

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    const force = setTimeout(() => process.exit(0), 5000);
    force.unref();
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

await main();
