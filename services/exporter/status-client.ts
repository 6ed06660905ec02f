// Fetches the node's GET /status over a keep-alive connection pool (one scrape = one request on
// an already open socket), bounded in time and in size. Every failure comes back as a value
// with a reason, never as an exception: the caller turns it into raftkv_up 0.

import { Pool, errors } from "undici";

/** Why a fetch did not yield a JSON body (also the `result` label of raftkv_exporter_status_fetches_total). */
export type FetchFailureReason =
  /** Connection refused/reset, DNS failure: the node process is not there. */
  | "unreachable"
  /** No complete answer within the timeout. */
  | "timeout"
  /** A status other than 200, or a body over the size limit. */
  | "bad_response"
  /** 200, but the body is not JSON (garbage, truncated). */
  | "invalid_json";

export type StatusFetch =
  | { ok: true; body: unknown; seconds: number }
  | { ok: false; reason: FetchFailureReason; message: string; seconds: number };

/** Far above any real status document (a few KiB per peer and method); guards against a runaway body. */
export const MAX_STATUS_BYTES = 8 * 1024 * 1024;

export class StatusClient {
  private readonly pool: Pool;
  private readonly path: string;

  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
  ) {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`status URL must be http(s): ${url}`);
    this.path = `${u.pathname}${u.search}`;
    this.pool = new Pool(u.origin, {
      connections: 4,
      // Scrapes come every 15-30s; keep the socket open across them.
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 120_000,
      connect: { timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  }

  /** One GET with an overall deadline of `timeoutMs` (default: the client's). */
  async fetch(timeoutMs = this.timeoutMs): Promise<StatusFetch> {
    const start = performance.now();
    const seconds = () => (performance.now() - start) / 1000;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const res = await this.pool.request({
        method: "GET",
        path: this.path,
        headers: { accept: "application/json" },
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      if (res.statusCode !== 200) {
        await res.body.dump().catch(() => undefined);
        return { ok: false, reason: "bad_response", message: `GET ${this.url} answered HTTP ${res.statusCode}`, seconds: seconds() };
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_STATUS_BYTES) {
          res.body.destroy();
          return { ok: false, reason: "bad_response", message: `GET ${this.url}: body larger than ${MAX_STATUS_BYTES} bytes`, seconds: seconds() };
        }
        chunks.push(chunk as Buffer);
      }
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        return { ok: true, body: JSON.parse(text) as unknown, seconds: seconds() };
      } catch (err) {
        return { ok: false, reason: "invalid_json", message: `GET ${this.url}: body is not JSON (${(err as Error).message})`, seconds: seconds() };
      }
    } catch (err) {
      return { ok: false, ...classify(err, signal, this.url, timeoutMs), seconds: seconds() };
    }
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

function classify(err: unknown, signal: AbortSignal, url: string, timeoutMs: number): { reason: FetchFailureReason; message: string } {
  if (
    signal.aborted ||
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    err instanceof errors.ConnectTimeoutError
  ) {
    return { reason: "timeout", message: `GET ${url}: no answer within ${timeoutMs} ms` };
  }
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code ?? e.cause?.code;
  return { reason: "unreachable", message: `GET ${url}: ${code ? `${code} ` : ""}${e.message}` };
}
