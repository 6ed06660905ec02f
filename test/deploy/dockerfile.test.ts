// Dockerfile.node and Dockerfile.exporter lint clean: dockerfile-utils (the validator behind the
// VS Code Docker extension, every check set to error) finds nothing, and the project's image
// policy holds: base image from ARG NODE_IMAGE, multi-stage with production-only dependencies,
// `npm ci`, a non-root numeric user, node as PID 1 in exec form, a HEALTHCHECK without curl.
// hadolint is not packaged in Debian, so the policy rules that matter here are written out below.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DockerfileParser, type Instruction } from "dockerfile-ast";
import { validate, ValidationSeverity } from "dockerfile-utils";
import { repoRoot } from "./render.js";

interface ImageExpectations {
  /** The compiled entry point node runs. */
  entry: string;
  /** Ports EXPOSEd, as documented. */
  ports: number[];
  /** The port variable and default the HEALTHCHECK reads. */
  healthPort: [string, number];
}

const images: Record<string, ImageExpectations> = {
  "Dockerfile.node": { entry: "dist/services/node/main.js", ports: [9091, 7001, 8080], healthPort: ["RAFTKV_HTTP_PORT", 8080] },
  "Dockerfile.exporter": { entry: "dist/services/exporter/main.js", ports: [9100], healthPort: ["RAFTKV_EXPORTER_PORT", 9100] },
};

const strict = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

function stages(text: string): { preamble: Instruction[]; stages: Stage[] } {
  const preamble: Instruction[] = [];
  const out: Stage[] = [];
  for (const ins of DockerfileParser.parse(text).getInstructions()) {
    if (ins.getKeyword() === "FROM") {
      const args = ins.getArguments().map((a) => a.getValue());
      const as = args.findIndex((a) => a.toUpperCase() === "AS");
      out.push({ from: args.filter((a) => !a.startsWith("--"))[0]!, name: as >= 0 ? args[as + 1] : undefined, instructions: [] });
    } else if (out.length === 0) preamble.push(ins);
    else out.at(-1)!.instructions.push(ins);
  }
  return { preamble, stages: out };
}

/** An instruction's text after its keyword, flags included, continuation lines joined. */
const content = (ins: Instruction) => ins.toString().slice(ins.getInstruction().length).trim();

/** The exec form's argv, or undefined for the shell form. */
function execForm(text: string): string[] | undefined {
  try {
    const argv = JSON.parse(text) as unknown;
    return Array.isArray(argv) && argv.every((a) => typeof a === "string") ? (argv as string[]) : undefined;
  } catch {
    return undefined;
  }
}

/** Every way a Dockerfile breaks the image policy ([] = none). */
function imagePolicyProblems(text: string, expect: ImageExpectations): string[] {
  const problems: string[] = [];
  const { preamble, stages: all } = stages(text);
  const arg = preamble.find((i) => i.getKeyword() === "ARG" && content(i).startsWith("NODE_IMAGE="));
  if (!arg || content(arg) !== "NODE_IMAGE=node:22-bookworm-slim") problems.push("ARG NODE_IMAGE=node:22-bookworm-slim must come before the first FROM");
  if (all.length < 2) problems.push("must be multi-stage: build with dev dependencies, run without");
  const names = new Set<string>();
  for (const s of all) {
    if (s.from !== "${NODE_IMAGE}" && !names.has(s.from)) problems.push(`FROM ${s.from}: every stage starts from \${NODE_IMAGE} or an earlier stage`);
    if (/:latest$/.test(s.from)) problems.push(`FROM ${s.from}: no latest tags`);
    if (s.name) names.add(s.name);
    for (const ins of s.instructions) {
      if (ins.getKeyword() === "RUN" && /\bnpm\s+(install|i)\b/.test(content(ins))) problems.push(`RUN ${content(ins)}: use npm ci (the lockfile), not npm install`);
      if (ins.getKeyword() === "ADD") problems.push(`ADD ${content(ins)}: use COPY`);
    }
  }
  const runtime = all.at(-1);
  if (!runtime) return problems;
  const ri = (kw: string) => runtime.instructions.filter((i) => i.getKeyword() === kw);

  // Production dependencies only: node_modules comes from a stage that ran `npm ci --omit=dev`.
  const nm = ri("COPY").find((c) => /\/node_modules\b/.test(content(c)));
  const from = nm && /--from=(\S+)/.exec(content(nm))?.[1];
  const depsStage = all.find((s) => s.name === from);
  if (!depsStage?.instructions.some((i) => i.getKeyword() === "RUN" && /\bnpm ci\b.*--omit=dev/.test(content(i)))) {
    problems.push("the runtime's node_modules must be copied from a stage that ran npm ci --omit=dev");
  }
  const dist = ri("COPY").find((c) => /\/dist\b/.test(content(c)));
  const buildStage = all.find((s) => s.name === (dist && /--from=(\S+)/.exec(content(dist))?.[1]));
  if (!buildStage?.instructions.some((i) => i.getKeyword() === "RUN" && /\bnpm run build\b/.test(content(i)))) problems.push("the runtime's dist/ must come from the stage that ran npm run build");
  for (const c of ri("COPY")) {
    if (!/--from=/.test(content(c)) && !/^package\.json\s/.test(content(c))) problems.push(`COPY ${content(c)}: the runtime takes only package.json from the context`);
  }
  if (ri("RUN").some((r) => /\bnpm\b/.test(content(r)))) problems.push("the runtime stage must not run npm");

  const users = ri("USER");
  const user = users.at(-1) && content(users.at(-1)!);
  if (!user || !/^[1-9][0-9]*(:[1-9][0-9]*)?$/.test(user)) problems.push(`USER ${user}: run as a numeric non-root uid (Kubernetes' runAsNonRoot checks it)`);

  const entry = ri("ENTRYPOINT").at(-1);
  const argv = entry && execForm(content(entry));
  if (!argv) problems.push("ENTRYPOINT must be in exec form, so node is PID 1 and gets SIGTERM");
  else if (argv.join(" ") !== `node ${expect.entry}`) problems.push(`ENTRYPOINT ${argv.join(" ")}: want node ${expect.entry}`);
  for (const cmd of ri("CMD")) if (!execForm(content(cmd))) problems.push(`CMD ${content(cmd)}: exec form only`);

  const hc = ri("HEALTHCHECK").at(-1);
  if (!hc) problems.push("no HEALTHCHECK");
  else {
    const m = /CMD\s+(\[.*\])\s*$/.exec(content(hc));
    const check = m && execForm(m[1]!);
    if (!check || check[0] !== "node") problems.push("HEALTHCHECK must run node itself in exec form (no curl in slim images)");
    else {
      const script = check.slice(1).join(" ");
      if (!script.includes("/livez")) problems.push("HEALTHCHECK must GET /livez");
      if (!script.includes(`process.env.${expect.healthPort[0]}||${expect.healthPort[1]}`)) problems.push(`HEALTHCHECK must follow ${expect.healthPort[0]} (default ${expect.healthPort[1]})`);
    }
    if (!/--timeout=\d+s/.test(content(hc)) || !/--interval=\d+s/.test(content(hc))) problems.push("HEALTHCHECK needs --interval and --timeout");
  }
  const exposed = ri("EXPOSE").flatMap((e) => content(e).split(/\s+/).map((p) => Number(p.replace(/\/tcp$/, ""))));
  if (exposed.sort().join() !== [...expect.ports].sort().join()) problems.push(`EXPOSE ${exposed.join(" ")}: want ${expect.ports.join(" ")}`);
  return problems;
}

/** Docker's .dockerignore semantics for the patterns used here: last match wins, `!` re-includes, a match on a directory covers what is below it. */
function ignored(patterns: string[], path: string): boolean {
  const toRegex = (p: string) =>
    new RegExp(
      "^" +
        p
          .replace(/\/$/, "")
          .replace(/[.+^${}()|[\]\\]/g, "\\$&")
          .replace(/\*\*\//g, "\uffff")
          .replace(/\*\*/g, ".*")
          .replace(/\*/g, "[^/]*")
          .replace(/\?/g, "[^/]")
          .replace(/\uffff/g, "(.*/)?") +
        "(/.*)?$",
    );
  let result = false;
  for (const raw of patterns) {
    const neg = raw.startsWith("!");
    if (toRegex(neg ? raw.slice(1) : raw).test(path)) result = !neg;
  }
  return result;
}

describe("Dockerfiles lint clean", () => {
  for (const [file, expect] of Object.entries(images)) {
    const text = readFileSync(join(repoRoot, file), "utf8");

    it(`${file}: dockerfile-utils reports no problem at all`, () => {
      const diagnostics = validate(text, strict).map((d) => `${file}:${d.range.start.line + 1}: ${d.message}`);
      assert.deepEqual(diagnostics, []);
    });

    it(`${file}: base from ARG NODE_IMAGE, production-only deps, npm ci, uid 1000, node as PID 1, HEALTHCHECK on /livez`, () => {
      assert.deepEqual(imagePolicyProblems(text, expect), []);
    });
  }

  it("both images share their build stages, so building one caches the other", () => {
    const build = (file: string) => {
      const { stages: all } = stages(readFileSync(join(repoRoot, file), "utf8"));
      return all.slice(0, -1).map((s) => [s.from, s.name, ...s.instructions.map((i) => `${i.getKeyword()} ${content(i)}`)]);
    };
    assert.deepEqual(build("Dockerfile.exporter"), build("Dockerfile.node"));
  });

  it("the node image puts the CLI on PATH as `raftkv`, as NOTES.txt and docs/kubernetes.md use it", () => {
    // The raw text: the parser's printout drops the backslashes of printf's \n.
    const text = readFileSync(join(repoRoot, "Dockerfile.node"), "utf8");
    const runtime = text.slice(text.lastIndexOf("\nFROM "));
    assert.ok(runtime.includes(`printf '#!/bin/sh\\nexec node /app/dist/services/cli/main.js "$@"\\n' > /usr/local/bin/raftkv`), "no raftkv wrapper in the runtime stage");
    assert.match(runtime, /chmod 0755 \/usr\/local\/bin\/raftkv/);
    const notes = readFileSync(join(repoRoot, "helm/raftkv/templates/NOTES.txt"), "utf8");
    assert.match(notes, /-c node -- raftkv put/);
  });

  it("the policy check fails a Dockerfile that breaks it", () => {
    const bad = [
      "FROM node:latest",
      "WORKDIR /app",
      "COPY . .",
      "RUN npm install && npm run build",
      "USER root",
      "CMD node dist/services/node/main.js",
    ].join("\n");
    const problems = imagePolicyProblems(bad, images["Dockerfile.node"]!).join("\n");
    for (const want of [/ARG NODE_IMAGE/, /multi-stage/, /FROM node:latest/, /npm ci/, /omit=dev/, /only package.json/, /numeric non-root uid/, /ENTRYPOINT must be in exec form/, /CMD node .*exec form only/, /no HEALTHCHECK/]) {
      assert.match(problems, want);
    }
    assert.ok(validate("FRM node\nHEALTHCHECK --interval=abc CMD true\n", strict).length >= 2, "dockerfile-utils finds errors");
  });
});

describe(".dockerignore", () => {
  const patterns = readFileSync(join(repoRoot, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));

  it("lets in everything the Dockerfiles COPY from the build context", () => {
    for (const file of Object.keys(images)) {
      for (const ins of DockerfileParser.parse(readFileSync(join(repoRoot, file), "utf8")).getInstructions()) {
        if (ins.getKeyword() !== "COPY" || /--from=/.test(content(ins))) continue;
        const sources = ins.getArguments().map((a) => a.getValue()).filter((a) => !a.startsWith("--")).slice(0, -1);
        for (const src of sources) assert.ok(!ignored(patterns, src.replace(/^\.\//, "")), `${file} copies ${src}, which .dockerignore leaves out`);
      }
    }
    assert.ok(!ignored(patterns, "services/node/main.ts"));
    assert.ok(!ignored(patterns, "services/common/gen/raftkv/v1/kv.ts"));
  });

  it("keeps out node_modules, dist, data, .git, tests and everything else", () => {
    for (const path of ["node_modules/pino/index.js", "dist/services/node/main.js", "data/n1/wal/0001.wal", ".git/HEAD", "test/deploy/chart.test.ts", "services/node/raft/raft.test.ts", "services/node/node_modules/x", "bench/results/a.json", ".env", "docs/kubernetes.md", "README.md"]) {
      assert.ok(ignored(patterns, path), `${path} would enter the build context`);
    }
  });
});
