// How the CLI shows things: aligned tables and readable bytes for people, stable JSON for
// machines. Bytes that are valid UTF-8 show as text; other bytes as 0x-hex (tables) or as a
// `...Base64` field (JSON), so nothing is silently mangled.

import type { KeyValue } from "../common/gen/raftkv/v1/kv.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The bytes as a string if they are valid UTF-8, else undefined. */
export function asText(b: Uint8Array): string | undefined {
  try {
    return utf8.decode(b);
  } catch {
    return undefined;
  }
}

/** For a person: the text, or 0x-hex when the bytes are not UTF-8 or hold control characters. */
export function showBytes(b: Uint8Array): string {
  const t = asText(b);
  // eslint-disable-next-line no-control-regex
  if (t !== undefined && !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(t)) return t;
  return `0x${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")}`;
}

/** A field of bytes for JSON: { name: text } or { nameBase64: base64 }. */
export function bytesField(name: string, b: Uint8Array): Record<string, string> {
  const t = asText(b);
  if (t !== undefined) return { [name]: t };
  return { [`${name}Base64`]: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64") };
}

export interface KeyValueJson {
  key?: string;
  keyBase64?: string;
  value?: string;
  valueBase64?: string;
  createRevision: number;
  modRevision: number;
  version: number;
}

export function kvJson(kv: KeyValue, withValue = true): KeyValueJson {
  return {
    ...bytesField("key", kv.key),
    ...(withValue ? bytesField("value", kv.value) : {}),
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
  };
}

/** Columns aligned with two spaces; the header row in capitals. */
export function table(headers: string[], rows: Array<Array<string | number | boolean>>): string {
  const cells = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => r.map((c) => String(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n") + "\n";
}

/** A JSON document on one line per value, newline-terminated. */
export function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + "\n";
}
