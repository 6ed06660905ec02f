// cluster up's log lines: pino JSON becomes one short line; LEADER stands out; the rest passes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ANSI, formatLogLine, useColour } from "./log-format.js";

const at = new Date(2026, 0, 2, 3, 4, 5, 67); // local time 03:04:05.067

test("a pino line becomes time, level, message and its own fields, without pid and hostname", () => {
  const line = JSON.stringify({ level: 30, time: at.toISOString(), pid: 42, hostname: "h", name: "raftkv-node", msg: "listening", port: 9091, host: "127.0.0.1" });
  assert.equal(formatLogLine(line, { color: false }), "03:04:05.067 INFO  listening port=9091 host=127.0.0.1");
});

test("epoch-millisecond times, string levels, errors and quoted values are shown readably", () => {
  const line = JSON.stringify({ level: 50, time: at.getTime(), msg: "request failed", err: { type: "Error", message: "disk full", stack: "..." }, path: "a b" });
  assert.equal(formatLogLine(line, { color: false }), '03:04:05.067 ERROR request failed err="disk full" path="a b"');
  assert.equal(formatLogLine(JSON.stringify({ level: "warn", msg: "slow fsync" }), { color: false }), "WARN  slow fsync");
});

test("long field lists are cut to keep the line short", () => {
  const fields = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`field${i}`, i]));
  const out = formatLogLine(JSON.stringify({ level: 30, time: at.getTime(), msg: "m", ...fields }), { color: false });
  assert.ok(out.length < 200, out);
  assert.ok(out.endsWith(" …"));
});

test("role changes (LEADER) are highlighted when colour is on", () => {
  const line = JSON.stringify({ level: 30, time: at.getTime(), msg: "n1 became LEADER at term 2", term: 2 });
  const out = formatLogLine(line, { color: true });
  assert.ok(out.includes(`${ANSI.bold}${ANSI.yellow}n1 became LEADER at term 2${ANSI.reset}`), out);
  const plain = formatLogLine(JSON.stringify({ level: 30, time: at.getTime(), msg: "applied" }), { color: true });
  assert.ok(!plain.includes(ANSI.bold));
});

test("lines that are not pino JSON pass through unchanged", () => {
  for (const line of ["plain text", "{not json", "[1,2]", '{"a":1}', "", "(node:1) Warning: something"]) {
    assert.equal(formatLogLine(line, { color: true }), line);
  }
});

test("colour follows the terminal, NO_COLOR and FORCE_COLOR", () => {
  assert.equal(useColour({ isTTY: true }, {}), true);
  assert.equal(useColour({ isTTY: false }, {}), false);
  assert.equal(useColour({ isTTY: true }, { NO_COLOR: "1" }), false);
  assert.equal(useColour({ isTTY: false }, { FORCE_COLOR: "1" }), true);
});
