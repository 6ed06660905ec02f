// The exporter's HTTP side: GET /metrics (one fresh scrape of the node per request) and GET
// /livez (the exporter process is alive; says nothing about the node, that is raftkv_up).

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { ExporterConfig } from "./config.js";
import { Exporter, negotiateFormat } from "./exporter.js";

export interface RunningExporter {
  /** Base URL, e.g. http://127.0.0.1:9100 (metrics at `${url}/metrics`). */
  url: string;
  port: number;
  app: FastifyInstance;
  exporter: Exporter;
  close(): Promise<void>;
}

export function buildExporterApp(exporter: Exporter, logger: Logger): FastifyInstance {
  // Request logging off: one line per scrape would bury the state-change warnings.
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  });

  app.get("/metrics", async (req, reply) => {
    const format = negotiateFormat(req.headers.accept);
    const timeoutHeader = req.headers["x-prometheus-scrape-timeout-seconds"];
    const scrapeTimeoutSeconds = typeof timeoutHeader === "string" ? Number(timeoutHeader) : undefined;
    const out = await exporter.scrape(format, { scrapeTimeoutSeconds });
    return reply.header("content-type", out.contentType).header("cache-control", "no-store").send(out.body);
  });

  app.get("/livez", async (_req, reply) => reply.header("content-type", "text/plain; charset=utf-8").send("ok\n"));

  app.get("/", async (_req, reply) =>
    reply.header("content-type", "text/plain; charset=utf-8").send("raftkv-exporter: metrics at /metrics, liveness at /livez\n"),
  );

  return app;
}

/** Starts an exporter on config.host:config.port (port 0 picks a free one). */
export async function startExporterServer(config: ExporterConfig, logger: Logger): Promise<RunningExporter> {
  const exporter = new Exporter({ statusUrl: config.statusUrl, timeoutMs: config.timeoutMs, logger });
  const app = buildExporterApp(exporter, logger);
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await exporter.close();
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.port;
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    url,
    port,
    app,
    exporter,
    close: async () => {
      await app.close();
      await exporter.close();
    },
  };
}
