// Server-side counters read around each measured window, the same few for both systems, so the
// report can say where a write's time goes: WAL fsyncs per second, the mean fsync, entries
// committed per fsync (group commit), and the servers' own request latency. raftkv's come from
// GET /status; etcd's from its Prometheus /metrics on the client port.

import { type StatusDocument } from "../services/common/status.js";

export interface NodeCounters {
  id: string;
  leader: boolean;
  fsyncCount: number;
  fsyncSeconds: number;
  /** Entries (proposals) committed as seen by this node. */
  committed: number;
  /** Server-side latency of client writes (sum seconds / count), where reported. */
  putCount?: number;
  putSeconds?: number;
  getCount?: number;
  getSeconds?: number;
  readIndex?: number;
}

export interface NodeWindow {
  id: string;
  leader: boolean;
  fsyncsPerSec: number;
  meanFsyncMs: number;
  committedPerSec: number;
  /** Committed entries per fsync on this node (its group-commit batch). */
  entriesPerFsync: number;
  serverPutMeanMs?: number;
  serverGetMeanMs?: number;
  readIndexPerSec?: number;
}

async function fetchText(url: string, timeoutMs = 2000): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.text();
}

export async function raftkvCounters(nodes: Array<{ id: string; host: string; httpPort: number }>): Promise<NodeCounters[]> {
  return Promise.all(
    nodes.map(async (n) => {
      const st = JSON.parse(await fetchText(`http://${n.host}:${n.httpPort}/status`)) as StatusDocument;
      const put = st.requests.find((r) => r.method === "Put");
      const get = st.requests.find((r) => r.method === "Get");
      return {
        id: n.id,
        leader: st.role === "leader",
        fsyncCount: st.histograms.walFsyncSeconds.count,
        fsyncSeconds: st.histograms.walFsyncSeconds.sum,
        committed: st.counters.proposalsCommitted,
        putCount: put?.latencySeconds.count ?? 0,
        putSeconds: put?.latencySeconds.sum ?? 0,
        getCount: get?.latencySeconds.count ?? 0,
        getSeconds: get?.latencySeconds.sum ?? 0,
        readIndex: st.counters.readIndexRequests,
      };
    }),
  );
}

/** The value of an unlabelled Prometheus sample (or the sum over its label sets). */
export function promValue(text: string, name: string): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) {
      sum += v;
      found = true;
    }
  }
  return found ? sum : NaN;
}

export async function etcdCounters(members: Array<{ name: string; host: string; clientPort: number }>): Promise<NodeCounters[]> {
  return Promise.all(
    members.map(async (m) => {
      const t = await fetchText(`http://${m.host}:${m.clientPort}/metrics`);
      return {
        id: m.name,
        leader: promValue(t, "etcd_server_is_leader") === 1,
        fsyncCount: promValue(t, "etcd_disk_wal_fsync_duration_seconds_count"),
        fsyncSeconds: promValue(t, "etcd_disk_wal_fsync_duration_seconds_sum"),
        committed: promValue(t, "etcd_server_proposals_committed_total"),
      };
    }),
  );
}

export function countersWindow(a: NodeCounters[], b: NodeCounters[], seconds: number): NodeWindow[] {
  return b.map((y) => {
    const x = a.find((n) => n.id === y.id) ?? y;
    const fs = y.fsyncCount - x.fsyncCount;
    const committed = y.committed - x.committed;
    const w: NodeWindow = {
      id: y.id,
      leader: y.leader,
      fsyncsPerSec: fs / seconds,
      meanFsyncMs: fs > 0 ? ((y.fsyncSeconds - x.fsyncSeconds) / fs) * 1000 : 0,
      committedPerSec: committed / seconds,
      entriesPerFsync: fs > 0 ? committed / fs : 0,
    };
    if (y.putCount !== undefined && x.putCount !== undefined) {
      const n = y.putCount - x.putCount;
      if (n > 0) w.serverPutMeanMs = ((y.putSeconds! - x.putSeconds!) / n) * 1000;
    }
    if (y.getCount !== undefined && x.getCount !== undefined) {
      const n = y.getCount - x.getCount;
      if (n > 0) w.serverGetMeanMs = ((y.getSeconds! - x.getSeconds!) / n) * 1000;
    }
    if (y.readIndex !== undefined && x.readIndex !== undefined) w.readIndexPerSec = (y.readIndex - x.readIndex) / seconds;
    return w;
  });
}
