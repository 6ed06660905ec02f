// One scrape of /metrics: fetch the node's /status, validate and convert it into a fresh
// prom-client registry (so nothing from an earlier scrape can leak into this one), add the
// exporter's own metrics, render in the format the scraper asked for.

import type { Logger } from "pino";
import { Counter, Gauge, Registry, collectDefaultMetrics, type RegistryContentType } from "prom-client";
import { NODE_METRICS, downFamily, registerFamilies, statusToMetrics } from "./convert.js";
import { StatusClient, type FetchFailureReason } from "./status-client.js";

export type ExpositionFormat = "openmetrics" | "prometheus";

export const CONTENT_TYPES: Record<ExpositionFormat, RegistryContentType> = {
  prometheus: Registry.PROMETHEUS_CONTENT_TYPE,
  openmetrics: Registry.OPENMETRICS_CONTENT_TYPE,
};

/** A new, empty registry that renders in `format`. */
export function newRegistry(format: ExpositionFormat): Registry {
  // prom-client's typings bind a registry's content type at compile time; ours is chosen per request.
  const r = new Registry() as Registry<RegistryContentType>;
  r.setContentType(CONTENT_TYPES[format]);
  return r as unknown as Registry;
}

interface MediaRange {
  type: string;
  params: Map<string, string>;
  q: number;
  order: number;
}

function parseAccept(accept: string): MediaRange[] {
  return accept
    .split(",")
    .map((part, order) => {
      const [type = "", ...rawParams] = part.split(";").map((s) => s.trim());
      const params = new Map<string, string>();
      for (const p of rawParams) {
        const eq = p.indexOf("=");
        if (eq > 0) params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"|"$/g, ""));
      }
      const q = params.has("q") ? Number(params.get("q")) : 1;
      return { type: type.toLowerCase(), params, q: Number.isFinite(q) ? q : 0, order };
    })
    .filter((r) => r.type !== "" && r.q > 0);
}

/**
 * HTTP content negotiation between the two formats we produce: OpenMetrics 1.0.0 when the
 * scraper lists `application/openmetrics-text` (without a version, or version 1.0.0) with a
 * quality at least as high as anything that would give the Prometheus text format; the
 * Prometheus text format 0.0.4 otherwise (no Accept header, `*` / `*`, `text/plain`, curl).
 */
export function negotiateFormat(accept: string | undefined): ExpositionFormat {
  if (!accept) return "prometheus";
  let best: { format: ExpositionFormat; q: number; order: number } | undefined;
  for (const r of parseAccept(accept)) {
    let format: ExpositionFormat | undefined;
    if (r.type === "application/openmetrics-text") {
      const version = r.params.get("version");
      if (version === undefined || version === "1.0.0") format = "openmetrics";
    } else if (r.type === "text/plain" || r.type === "text/*" || r.type === "*/*") {
      const version = r.params.get("version");
      if (version === undefined || version === "0.0.4") format = "prometheus";
    }
    if (!format) continue;
    if (!best || r.q > best.q || (r.q === best.q && r.order < best.order)) best = { format, q: r.q, order: r.order };
  }
  return best?.format ?? "prometheus";
}

/** The exporter's own metrics (besides prom-client's process_* and nodejs_* ones). */
export const EXPORTER_METRICS = {
  scrapeDuration: {
    name: "raftkv_exporter_scrape_duration_seconds",
    help: "Time this scrape spent fetching, validating and converting the node's /status, in seconds.",
  },
  scrapes: { name: "raftkv_exporter_scrapes_total", help: "Scrapes of /metrics served by this exporter, by exposition format." },
  fetches: {
    name: "raftkv_exporter_status_fetches_total",
    help: "Fetches of the node's /status by result: ok, unreachable, timeout, bad_response, invalid_json, invalid_document.",
  },
} as const;

export type FetchResult = "ok" | FetchFailureReason | "invalid_document";
const FETCH_RESULTS: readonly FetchResult[] = ["ok", "unreachable", "timeout", "bad_response", "invalid_json", "invalid_document"];

/**
 * prom-client's default metrics, one registry per format: rendering a registry as OpenMetrics
 * renames its counters in place (the family loses `_total`), so the same objects must never
 * be rendered in both formats. Process-wide, created on first use.
 */
const processRegistries = new Map<ExpositionFormat, Registry>();
function processRegistry(format: ExpositionFormat): Registry {
  let r = processRegistries.get(format);
  if (!r) {
    r = newRegistry(format);
    collectDefaultMetrics({ register: r });
    // Gauges whose names end in _total break the naming rule promtool enforces (and that
    // Prometheus relies on for counters); nodejs_active_handles{type} etc. carry the same data.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      r.removeSingleMetric(name);
    }
    processRegistries.set(format, r);
  }
  return r;
}

export interface ExporterOptions {
  statusUrl: string;
  /** Upper bound for one /status fetch. */
  timeoutMs: number;
  logger: Logger;
}

export interface ScrapeOptions {
  /** The scraper's own timeout (Prometheus sends X-Prometheus-Scrape-Timeout-Seconds). */
  scrapeTimeoutSeconds?: number;
}

export interface ScrapeOutput {
  format: ExpositionFormat;
  contentType: string;
  body: string;
  up: boolean;
}

type NodeState = "unknown" | "up" | "down";

export class Exporter {
  private readonly client: StatusClient;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private state: NodeState = "unknown";
  private readonly scrapes: Record<ExpositionFormat, number> = { openmetrics: 0, prometheus: 0 };
  private readonly fetches = Object.fromEntries(FETCH_RESULTS.map((r) => [r, 0])) as Record<FetchResult, number>;

  constructor(opts: ExporterOptions) {
    this.client = new StatusClient(opts.statusUrl, opts.timeoutMs);
    this.logger = opts.logger;
    this.timeoutMs = opts.timeoutMs;
  }

  /** The fetch deadline for one scrape: ours, but always inside the scraper's own timeout. */
  fetchTimeoutMs(scrapeTimeoutSeconds?: number): number {
    if (scrapeTimeoutSeconds === undefined || !Number.isFinite(scrapeTimeoutSeconds) || scrapeTimeoutSeconds <= 0) return this.timeoutMs;
    return Math.max(50, Math.min(this.timeoutMs, Math.floor(scrapeTimeoutSeconds * 1000 * 0.8)));
  }

  async scrape(format: ExpositionFormat, opts: ScrapeOptions = {}): Promise<ScrapeOutput> {
    const start = performance.now();
    this.scrapes[format]++;
    const fetched = await this.client.fetch(this.fetchTimeoutMs(opts.scrapeTimeoutSeconds));
    let families;
    let result: FetchResult;
    if (fetched.ok) {
      const converted = statusToMetrics(fetched.body);
      families = converted.families;
      if (converted.up) {
        result = "ok";
        this.markUp();
      } else {
        result = "invalid_document";
        this.markDown(result, `${this.client.url}: not a valid status document: ${converted.error}`);
      }
    } else {
      families = [downFamily()];
      result = fetched.reason;
      this.markDown(result, fetched.message);
    }
    this.fetches[result]++;

    const registry = newRegistry(format);
    registerFamilies(families, registry);
    new Gauge({ ...EXPORTER_METRICS.scrapeDuration, registers: [registry] }).set((performance.now() - start) / 1000);
    const scrapes = new Counter({ ...EXPORTER_METRICS.scrapes, labelNames: ["format"], registers: [registry] });
    for (const f of ["openmetrics", "prometheus"] as const) scrapes.inc({ format: f }, this.scrapes[f]);
    const fetches = new Counter({ ...EXPORTER_METRICS.fetches, labelNames: ["result"], registers: [registry] });
    for (const r of FETCH_RESULTS) fetches.inc({ result: r }, this.fetches[r]);

    const body = await Registry.merge([registry, processRegistry(format)]).metrics();
    return { format, contentType: CONTENT_TYPES[format], body, up: result === "ok" };
  }

  /** Logs once per transition, never per scrape: a node down for an hour is one warning. */
  private markUp(): void {
    if (this.state === "up") return;
    if (this.state === "down") this.logger.info({ statusUrl: this.client.url }, "node status is readable again: raftkv_up 1");
    else this.logger.info({ statusUrl: this.client.url }, "node status is readable: raftkv_up 1");
    this.state = "up";
  }

  private markDown(result: FetchResult, message: string): void {
    if (this.state === "down") {
      this.logger.debug({ result }, message);
      return;
    }
    this.state = "down";
    this.logger.warn({ statusUrl: this.client.url, result }, `node status unavailable, exporting raftkv_up 0 until it recovers: ${message}`);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** Every metric name the exporter itself defines (node metrics and its own), for tests. */
export const DEFINED_METRIC_NAMES: readonly string[] = [
  ...Object.values(NODE_METRICS).map((m) => m.name),
  ...Object.values(EXPORTER_METRICS).map((m) => m.name),
];
