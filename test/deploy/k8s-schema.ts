// Validates rendered Kubernetes objects the way the API server does, unknown fields included.
//
// kubernetes-models ships a compiled validator per kind (types, required fields, enums, formats)
// generated from the Kubernetes OpenAPI spec, but like the spec itself it lets unknown fields
// through, and an unknown field is exactly what a typo in a manifest produces (the API server
// rejects it under strict field validation, or drops it silently otherwise). The same package
// ships the TypeScript interface of every kind, generated from the same spec; this module walks
// an object against that interface with the TypeScript checker and reports every field the
// interface does not declare. Custom resources (the Prometheus Operator's) are checked against
// the schemas in crd-schemas.ts.
import { createRequire } from "node:module";
import { join } from "node:path";
import ts from "typescript";
import { repoRoot, type K8sObject } from "./render.js";
import { validateCustomResource, customResourceKinds } from "./crd-schemas.js";

/** Built-in kinds this validator knows, as apiVersion/kind. Add one here to validate it. */
export const builtinKinds = [
  "v1/ConfigMap",
  "v1/Secret",
  "v1/Service",
  "v1/ServiceAccount",
  "v1/Pod",
  "v1/PersistentVolumeClaim",
  "v1/Namespace",
  "apps/v1/StatefulSet",
  "apps/v1/Deployment",
  "policy/v1/PodDisruptionBudget",
  "networking.k8s.io/v1/NetworkPolicy",
] as const;

const require = createRequire(import.meta.url);

function modulePath(key: string): string {
  // "apps/v1/StatefulSet" -> kubernetes-models/apps/v1/StatefulSet (the core group is "v1/...").
  return `kubernetes-models/${key}`;
}

let program: { checker: ts.TypeChecker; types: Map<string, ts.Type> } | undefined;

/** One TypeScript program over the interfaces of every built-in kind, built on first use (~1 s). */
function typeProgram(): { checker: ts.TypeChecker; types: Map<string, ts.Type> } {
  if (program) return program;
  const file = join(repoRoot, "test/deploy/__k8s_types__.ts"); // virtual: never written to disk
  const lines: string[] = [];
  builtinKinds.forEach((key, i) => {
    const kind = key.split("/").at(-1)!;
    lines.push(`import type { I${kind} as T${i} } from "${modulePath(key)}";`);
    lines.push(`export type K${i} = T${i};`);
  });
  const source = lines.join("\n");
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    // The models' .d.ts files import each other without extensions: bundler resolution accepts that
    // and still honours the package's exports map.
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, onError) =>
    name === file ? ts.createSourceFile(name, source, languageVersion, true) : getSourceFile(name, languageVersion, onError);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const tsProgram = ts.createProgram([file], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(tsProgram, tsProgram.getSourceFile(file));
  if (diagnostics.length) {
    throw new Error(`cannot load the kubernetes-models types: ${ts.flattenDiagnosticMessageText(diagnostics[0]!.messageText, "\n")}`);
  }
  const checker = tsProgram.getTypeChecker();
  const types = new Map<string, ts.Type>();
  const sf = tsProgram.getSourceFile(file)!;
  for (const stmt of sf.statements) {
    if (!ts.isTypeAliasDeclaration(stmt)) continue;
    const i = Number(stmt.name.text.slice(1));
    const type = checker.getTypeAtLocation(stmt.name);
    // A type that failed to resolve is `any`, which would accept everything: refuse that.
    if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown) || checker.getPropertiesOfType(type).length === 0) {
      throw new Error(`the type of ${builtinKinds[i]} did not resolve; unknown-field checks would be void`);
    }
    types.set(builtinKinds[i]!, type);
  }
  program = { checker, types };
  return program;
}

/** Fields of `value` that its TypeScript type does not declare, as JSON paths. */
function unknownFields(checker: ts.TypeChecker, value: unknown, type: ts.Type, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  type = checker.getNonNullableType(type);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
  if (type.isUnion()) {
    const objectish = type.types.filter((t) => t.flags & ts.TypeFlags.Object);
    if (typeof value !== "object" || objectish.length === 0) return; // primitives: the models' validator checks them
    // Accept the value if any member of the union declares all its fields.
    let best: string[] | undefined;
    for (const member of objectish) {
      const errs: string[] = [];
      unknownFields(checker, value, member, path, errs);
      if (!best || errs.length < best.length) best = errs;
      if (errs.length === 0) return;
    }
    out.push(...best!);
    return;
  }
  if (Array.isArray(value)) {
    const element = type.getNumberIndexType();
    if (!element) return;
    value.forEach((v, i) => unknownFields(checker, v, element, `${path}[${i}]`, out));
    return;
  }
  if (typeof value !== "object" || !(type.flags & ts.TypeFlags.Object)) return;
  const stringIndex = type.getStringIndexType();
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const prop = type.getProperty(key);
    const where = path ? `${path}.${key}` : key;
    if (prop) unknownFields(checker, v, checker.getTypeOfSymbol(prop), where, out);
    else if (stringIndex) unknownFields(checker, v, stringIndex, where, out);
    else out.push(`${where}: unknown field`);
  }
}

type ModelClass = new (data: unknown) => { validate(): void };
const modelCache = new Map<string, ModelClass>();

function modelClass(key: string): ModelClass {
  let cls = modelCache.get(key);
  if (!cls) {
    const mod = require(modulePath(key)) as Record<string, ModelClass>;
    cls = mod[key.split("/").at(-1)!];
    if (!cls) throw new Error(`kubernetes-models has no class for ${key}`);
    modelCache.set(key, cls);
  }
  return cls;
}

/**
 * Every problem with one object, as readable strings naming the object and the field; [] when
 * the API server would accept it as is.
 */
export function validateObject(obj: K8sObject): string[] {
  const what = `${obj?.kind ?? "?"} ${obj?.metadata?.name ?? "?"}`;
  if (!obj || typeof obj !== "object") return [`${what}: not an object`];
  if (!obj.metadata?.name) return [`${what}: metadata.name is missing`];
  const key = `${obj.apiVersion}/${obj.kind}`;
  if (customResourceKinds.includes(key)) return validateCustomResource(obj).map((e) => `${what}: ${e}`);
  if (!(builtinKinds as readonly string[]).includes(key)) return [`${what}: no schema for ${key} (add it to builtinKinds or crd-schemas.ts)`];
  const errors: string[] = [];
  try {
    new (modelClass(key))(obj).validate();
  } catch (err) {
    errors.push(`${what}: ${(err as Error).message}`);
  }
  const { checker, types } = typeProgram();
  const unknown: string[] = [];
  unknownFields(checker, obj, types.get(key)!, "", unknown);
  errors.push(...unknown.sort().map((e) => `${what}: ${e}`));
  return errors;
}

/** Problems with every object of a rendered set, plus objects of one kind sharing a name. */
export function validateObjects(objects: K8sObject[]): string[] {
  const errors = objects.flatMap(validateObject);
  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
    if (seen.has(id)) errors.push(`${o.kind} ${o.metadata?.name}: defined twice`);
    seen.add(id);
  }
  return errors;
}
