// Preloaded into each raftkv node by `npm run bench -- --profile DIR` (NODE_OPTIONS=--import,
// because Node 20 refuses --cpu-prof in NODE_OPTIONS): SIGUSR2 starts a V8 CPU profile and the
// next SIGUSR2 stops it and writes $RAFTKV_BENCH_PROFILE_DIR/node-<pid>-<n>.cpuprofile. So the
// profile covers exactly the benchmark's measured windows. Plain JS: it loads before tsx does.

import { writeFileSync, renameSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

const dir = process.env.RAFTKV_BENCH_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  let running = false;
  let n = 0;
  process.on("SIGUSR2", () => {
    if (!running) {
      running = true;
      session.post("Profiler.start");
      return;
    }
    running = false;
    session.post("Profiler.stop", (err, res) => {
      if (err) {
        process.stderr.write(`node-profiler: ${err.message}\n`);
        return;
      }
      // Written under a temp name and renamed, so the benchmark never reads half a file.
      const file = join(dir, `node-${process.pid}-${++n}.cpuprofile`);
      writeFileSync(`${file}.tmp`, JSON.stringify(res.profile));
      renameSync(`${file}.tmp`, file);
    });
  });
}
