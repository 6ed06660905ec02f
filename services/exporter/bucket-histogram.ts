// A prom-client histogram whose buckets are given, not observed. The node already keeps its
// histograms as cumulative buckets (StatusHistogram); prom-client's Histogram only knows how
// to build them from observe() calls, which would force us to re-estimate samples. This
// subclass keeps prom-client's registry, naming and both exposition formats, and replaces
// only the values it reports.

import { Histogram, type Registry } from "prom-client";
import type { StatusHistogram } from "../common/status.js";

type Labels = Record<string, string>;

interface BucketSeries {
  labels: Labels;
  histogram: StatusHistogram;
}

interface HistogramValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

type HistogramGet = Awaited<ReturnType<Histogram<string>["get"]>>;

export class BucketHistogram extends Histogram<string> {
  private readonly series: BucketSeries[] = [];
  private readonly familyName: string;
  private readonly familyHelp: string;

  constructor(config: { name: string; help: string; labelNames: string[]; registers: Registry[] }) {
    // The base class's own buckets are never used: every series carries its own bounds.
    super({ ...config, labelNames: [...config.labelNames], buckets: [] });
    this.familyName = config.name;
    this.familyHelp = config.help;
  }

  /** Adds one labelled series: its cumulative buckets, +Inf (= count), _sum and _count. */
  addSeries(labels: Labels, histogram: StatusHistogram): void {
    this.series.push({ labels, histogram });
  }

  /**
   * prom-client's registry renders histograms through this (undocumented, untyped) method when
   * it exists, and get() otherwise; both must report our buckets.
   */
  async getForPromString(): Promise<HistogramGet> {
    return this.get();
  }

  override async get(): Promise<HistogramGet> {
    const name = this.familyName;
    const values: HistogramValue[] = [];
    for (const { labels, histogram } of this.series) {
      histogram.buckets.forEach((bound, i) => {
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(bound) }, value: histogram.counts[i]! });
      });
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: histogram.count });
      values.push({ metricName: `${name}_sum`, labels: { ...labels }, value: histogram.sum });
      values.push({ metricName: `${name}_count`, labels: { ...labels }, value: histogram.count });
    }
    // prom-client's typings declare `type` as a numeric enum, but its registry (and its own
    // Histogram) use the string "histogram" at run time.
    const family = { name, help: this.familyHelp, type: "histogram", values, aggregator: "sum" };
    return family as unknown as HistogramGet;
  }
}
