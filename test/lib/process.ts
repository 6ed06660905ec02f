// Stopping a child process a test started: SIGTERM, then SIGKILL if it has not exited within
// the grace period. Resolves once it has exited (at once if it already had).

import { type ChildProcess } from "node:child_process";

export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // The 'exit' event has not been emitted yet (it comes from the event loop), so this sees it.
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([exited.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
  clearTimeout(timer);
  if (!done) {
    child.kill("SIGKILL");
    await exited;
  }
}
