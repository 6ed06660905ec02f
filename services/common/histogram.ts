// A fixed-bucket histogram whose cumulative buckets go to /status as-is, so the exporter hands
// Prometheus the real distribution instead of re-estimating it.

import { type StatusHistogram } from "./status.js";

/** etcd's WAL fsync buckets: 1 ms .. 8 s, doubling. */
export const DISK_BUCKETS = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i);
/** Apply, RTT and request latencies: 100 µs .. ~6.5 s, doubling. */
export const LATENCY_BUCKETS = Array.from({ length: 17 }, (_, i) => 0.0001 * 2 ** i);

export class Histogram {
  private readonly counts: number[];
  private total = 0;
  private sum = 0;

  constructor(readonly buckets: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Array<number>(buckets.length).fill(0);
  }

  observe(seconds: number): void {
    this.total++;
    this.sum += seconds;
    // Non-cumulative here; cumulated when read.
    for (let i = 0; i < this.buckets.length; i++) {
      if (seconds <= this.buckets[i]) {
        this.counts[i]++;
        return;
      }
    }
  }

  get count(): number {
    return this.total;
  }

  toStatus(): StatusHistogram {
    const cumulative: number[] = [];
    let acc = 0;
    for (const c of this.counts) {
      acc += c;
      cumulative.push(acc);
    }
    return { buckets: [...this.buckets], counts: cumulative, count: this.total, sum: this.sum };
  }
}
