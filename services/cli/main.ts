// raftkv: the command line. Wiring only: process argv/streams/env -> program.run -> exit code.
//   node --import tsx services/cli/main.ts <command> ...   (npm run raftkv -- <command> ...)
//   node dist/services/cli/main.js <command> ...           (the build; `raftkv` in the images)
//   bin/raftkv.mjs <command> ...                           (either, whichever exists)

import { useColour } from "./log-format.js";
import { run } from "./program.js";

// A closed stdout (`raftkv range | head`) is not an error worth a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await run(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  color: useColour(process.stdout, process.env),
  moduleUrl: import.meta.url,
});
