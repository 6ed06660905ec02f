// CPU accounting for the benchmark from /proc: CPU time of given processes (all threads) and of
// the whole machine, so each measured window can say how busy the servers, the client and
// everything else (other work on a shared machine) were.

import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

let clkTck = 100;
try {
  clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
} catch {
  // getconf missing: Linux's USER_HZ is 100 on every common build.
}

/** CPU seconds (user + system, all threads) of a process so far; undefined if it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces; fields after the closing paren are fixed.
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (Number(rest[11]) + Number(rest[12])) / clkTck;
  } catch {
    return undefined;
  }
}

/** Busy and total CPU seconds of the whole machine (all cores) so far. */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy: busy / clkTck, total: (busy + idle + iowait) / clkTck };
}

export interface CpuSnapshot {
  at: number;
  procs: Map<number, number | undefined>;
  self: NodeJS.CpuUsage;
  machine: { busy: number; total: number };
}

export function cpuSnapshot(pids: number[]): CpuSnapshot {
  return {
    at: performance.now(),
    procs: new Map(pids.map((p) => [p, processCpuSeconds(p)])),
    self: process.cpuUsage(),
    machine: machineCpuSeconds(),
  };
}

export interface CpuWindow {
  seconds: number;
  /** Per server process: share of one core used in the window (1.0 = one core busy). */
  servers: Array<{ pid: number; cores: number }>;
  /** This benchmark process (the client), cores. */
  client: number;
  /** Whole machine busy, cores. */
  machineBusy: number;
  /** Everything else on the machine (machine busy - servers - client), cores; other work on a shared machine. */
  other: number;
}

export function cpuWindow(a: CpuSnapshot, b: CpuSnapshot): CpuWindow {
  const seconds = (b.at - a.at) / 1000;
  const servers = [...a.procs.keys()].map((pid) => {
    const x = a.procs.get(pid);
    const y = b.procs.get(pid);
    return { pid, cores: x === undefined || y === undefined || seconds <= 0 ? 0 : (y - x) / seconds };
  });
  const client = seconds > 0 ? (b.self.user + b.self.system - a.self.user - a.self.system) / 1e6 / seconds : 0;
  const machineBusy = seconds > 0 ? (b.machine.busy - a.machine.busy) / seconds : 0;
  const serverSum = servers.reduce((s, x) => s + x.cores, 0);
  return { seconds, servers, client, machineBusy, other: Math.max(0, machineBusy - serverSum - client) };
}
