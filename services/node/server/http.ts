// HTTP on the status port: GET /status (JSON, the exporter's input), /livez and /readyz
// (Kubernetes probes).

import Fastify, { type FastifyInstance } from "fastify";
import { type StatusDocument } from "../../common/status.js";

export interface HttpOptions {
  host: string;
  port: number;
  status(): StatusDocument;
  /** Alive: the process can serve and the consensus core has not stopped on an error. */
  live(): { ok: boolean; reason?: string };
  /** Ready: a leader is known and applied caught up with commit. */
  ready(): { ok: boolean; reason?: string };
}

export async function startHttp(o: HttpOptions): Promise<{ app: FastifyInstance; port: number }> {
  const app = Fastify({ logger: false, connectionTimeout: 10_000, requestTimeout: 10_000, keepAliveTimeout: 65_000 });
  app.get("/status", async (_req, reply) => {
    reply.header("cache-control", "no-store");
    return o.status();
  });
  app.get("/livez", async (_req, reply) => {
    const l = o.live();
    reply.code(l.ok ? 200 : 503);
    return l.ok ? "ok\n" : `not live: ${l.reason}\n`;
  });
  app.get("/readyz", async (_req, reply) => {
    const r = o.ready();
    reply.code(r.ok ? 200 : 503);
    return r.ok ? "ok\n" : `not ready: ${r.reason}\n`;
  });
  await app.listen({ host: o.host, port: o.port });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : o.port;
  return { app, port };
}
