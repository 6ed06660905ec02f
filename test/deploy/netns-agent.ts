// A client that lives inside a test's network namespace (started with `ip netns exec`), so it
// sees the pods' 127.0.0.x addresses and the namespace's /etc/hosts exactly as the pods do. The
// test drives it over stdio, one JSON object per line:
//
//   in:  {"id":1,"op":"status","url":"http://127.0.0.11:8080/status"}
//        {"id":2,"op":"lookup","host":"raftkv-2.raftkv-headless.default.svc.cluster.local"}
//        {"id":3,"op":"put","target":"raftkv-0.raftkv-headless...:9091","key":"k","value":"v","clientId":"c","seq":1}
//        {"id":4,"op":"get","target":"...:9091","key":"k"}
//   out: {"id":1,"ok":true,"result":...} or {"id":1,"ok":false,"error":"..."}
//
// Every operation has a deadline; requests are answered as they complete (not in order). The
// agent exits when its stdin closes.
import { lookup } from "node:dns/promises";
import { createInterface } from "node:readline";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { KVClient, ReadConsistency } from "../../services/common/gen/raftkv/v1/kv.js";

export type AgentRequest =
  | { op: "status"; url: string; timeoutMs?: number }
  | { op: "lookup"; host: string }
  | { op: "put"; target: string; key: string; value: string; clientId: string; seq: number; timeoutMs?: number }
  | { op: "get"; target: string; key: string; timeoutMs?: number };

const clients = new Map<string, InstanceType<typeof KVClient>>();
const client = (target: string) => {
  let c = clients.get(target);
  if (!c) {
    c = new KVClient(target, credentials.createInsecure(), { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 1000 });
    clients.set(target, c);
  }
  return c;
};

function unary<Req, Res>(method: "put" | "get", target: string, req: Req, timeoutMs: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (client(target) as any)[method](req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err: ServiceError | null, res: Res) =>
      err ? reject(new Error(`${method} via ${target}: ${err.code} ${err.details || err.message}`)) : resolve(res),
    );
  });
}

async function handle(req: AgentRequest): Promise<unknown> {
  switch (req.op) {
    case "status": {
      const res = await fetch(req.url, { signal: AbortSignal.timeout(req.timeoutMs ?? 1500) });
      if (!res.ok) throw new Error(`${req.url}: HTTP ${res.status}`);
      return await res.json();
    }
    case "lookup": {
      const all = await lookup(req.host, { all: true });
      return all.map((a) => a.address);
    }
    case "put": {
      await unary("put", req.target, { key: Buffer.from(req.key), value: Buffer.from(req.value), requestId: { clientId: req.clientId, seq: req.seq }, prevKv: false }, req.timeoutMs ?? 3000);
      return true;
    }
    case "get": {
      const r = await unary<unknown, { found: boolean; kv?: { value: Uint8Array } }>(
        "get",
        req.target,
        { key: Buffer.from(req.key), consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE },
        req.timeoutMs ?? 3000,
      );
      return r.found ? Buffer.from(r.kv!.value).toString() : null;
    }
    default:
      throw new Error(`unknown op ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let msg: AgentRequest & { id: number };
  try {
    msg = JSON.parse(line) as AgentRequest & { id: number };
  } catch {
    process.stdout.write(`${JSON.stringify({ id: -1, ok: false, error: `not JSON: ${line.slice(0, 100)}` })}\n`);
    return;
  }
  handle(msg).then(
    (result) => process.stdout.write(`${JSON.stringify({ id: msg.id, ok: true, result })}\n`),
    (err: unknown) => process.stdout.write(`${JSON.stringify({ id: msg.id, ok: false, error: (err as Error).message ?? String(err) })}\n`),
  );
});
lines.on("close", () => {
  for (const c of clients.values()) c.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ id: 0, ok: true, result: "ready" })}\n`);
