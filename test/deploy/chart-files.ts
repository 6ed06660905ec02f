// The chart carries two files that live elsewhere in the repository: the alert rules
// (prometheus/alerts.yml) and the Grafana dashboard (grafana/dashboards/raftkv.json). Helm reads
// extra files with .Files, which the offline renderer here does not support, so each is embedded
// in a generated named template: the content as one Go string literal (JSON string escaping is
// valid Go string escaping, and a string literal is never parsed for {{ }}, which both files
// use for Prometheus and Grafana templating).
//
//   node --import tsx test/deploy/chart-files.ts          # check: exit 1 if out of date
//   node --import tsx test/deploy/chart-files.ts --write  # regenerate after changing a source
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { repoRoot } from "./render.js";

export interface EmbeddedFile {
  /** The source, relative to the repository root. */
  source: string;
  /** The generated template, relative to the repository root. */
  target: string;
  /** The named template that yields the content. */
  define: string;
  /** What the template yields, from the source's text. */
  content: (text: string) => string;
}

export const embeddedFiles: EmbeddedFile[] = [
  {
    source: "prometheus/alerts.yml",
    target: "helm/raftkv/templates/_alerts.tpl",
    define: "raftkv.files.alerts",
    // The rule file as JSON: the template reads it back with fromJson and writes spec.groups.
    content: (text) => {
      const rules = parseYaml(text) as { groups?: unknown };
      if (!rules || !Array.isArray(rules.groups)) throw new Error("prometheus/alerts.yml has no groups list");
      return JSON.stringify({ groups: rules.groups });
    },
  },
  {
    source: "grafana/dashboards/raftkv.json",
    target: "helm/raftkv/templates/_dashboard.tpl",
    define: "raftkv.files.dashboard",
    // The dashboard as it is, after checking it is JSON.
    content: (text) => {
      JSON.parse(text);
      return text.trimEnd();
    },
  },
];

/** The generated template for one embedded file, or an error when its source is missing or invalid. */
export function generateTemplate(file: EmbeddedFile): string {
  const path = join(repoRoot, file.source);
  if (!existsSync(path)) throw new Error(`${file.source} does not exist: the chart embeds it`);
  const content = file.content(readFileSync(path, "utf8"));
  return [
    `{{/* GENERATED from ${file.source} by \`node --import tsx test/deploy/chart-files.ts --write\`: do not edit. */}}`,
    `{{- define "${file.define}" -}}`,
    `{{ ${JSON.stringify(content)} }}`,
    `{{- end -}}`,
    "",
  ].join("\n");
}

/** For each embedded file: whether the committed template matches its source. */
export function checkTemplates(): { file: EmbeddedFile; upToDate: boolean; error?: string }[] {
  return embeddedFiles.map((file) => {
    try {
      const want = generateTemplate(file);
      const targetPath = join(repoRoot, file.target);
      const have = existsSync(targetPath) ? readFileSync(targetPath, "utf8") : "";
      return { file, upToDate: have === want };
    } catch (err) {
      return { file, upToDate: false, error: (err as Error).message };
    }
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const write = process.argv.includes("--write");
  let bad = 0;
  for (const { file, upToDate, error } of checkTemplates()) {
    if (error) {
      console.error(`${file.target}: ${error}`);
      bad++;
    } else if (upToDate) {
      console.log(`${file.target}: up to date with ${file.source}`);
    } else if (write) {
      writeFileSync(join(repoRoot, file.target), generateTemplate(file));
      console.log(`${file.target}: regenerated from ${file.source}`);
    } else {
      console.error(`${file.target}: out of date with ${file.source} (run with --write)`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
}
