// JSON schemas for the Prometheus Operator resources the chart renders (monitoring.coreos.com/v1
// ServiceMonitor, PodMonitor, PrometheusRule), covering the fields raftkv uses and their close
// neighbours, with unknown fields rejected at every level. Field names and formats follow the
// operator's CRDs (Duration is its pattern; a rule has either `alert` or `record`).
import { Ajv, type ErrorObject } from "ajv";
import type { K8sObject } from "./render.js";

const duration = {
  type: "string",
  pattern: "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
};
const stringMap = { type: "object", additionalProperties: { type: "string" } };
const dnsName = { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", maxLength: 253 };

const metadata = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: { name: dnsName, namespace: dnsName, labels: stringMap, annotations: stringMap },
};
const labelSelector = {
  type: "object",
  additionalProperties: false,
  properties: {
    matchLabels: stringMap,
    matchExpressions: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["key", "operator"],
        properties: {
          key: { type: "string" },
          operator: { enum: ["In", "NotIn", "Exists", "DoesNotExist"] },
          values: { type: "array", items: { type: "string" } },
        },
      },
    },
  },
};
const namespaceSelector = {
  type: "object",
  additionalProperties: false,
  properties: { any: { type: "boolean" }, matchNames: { type: "array", items: { type: "string" } } },
};
const relabelConfig = {
  type: "object",
  additionalProperties: false,
  properties: {
    action: { type: "string" },
    sourceLabels: { type: "array", items: { type: "string" } },
    separator: { type: "string" },
    targetLabel: { type: "string" },
    regex: { type: "string" },
    modulus: { type: "integer" },
    replacement: { type: "string" },
  },
};
const endpointCommon = {
  port: { type: "string", minLength: 1 },
  path: { type: "string", pattern: "^/" },
  scheme: { enum: ["http", "https"] },
  interval: duration,
  scrapeTimeout: duration,
  honorLabels: { type: "boolean" },
  honorTimestamps: { type: "boolean" },
  relabelings: { type: "array", items: relabelConfig },
  metricRelabelings: { type: "array", items: relabelConfig },
};
const resource = (kind: string, spec: object) => ({
  type: "object",
  additionalProperties: false,
  required: ["apiVersion", "kind", "metadata", "spec"],
  properties: {
    apiVersion: { const: "monitoring.coreos.com/v1" },
    kind: { const: kind },
    metadata,
    spec,
  },
});

const serviceMonitor = resource("ServiceMonitor", {
  type: "object",
  additionalProperties: false,
  required: ["selector", "endpoints"],
  properties: {
    jobLabel: { type: "string" },
    selector: labelSelector,
    namespaceSelector,
    endpoints: { type: "array", minItems: 1, items: { type: "object", additionalProperties: false, properties: endpointCommon } },
  },
});
const podMonitor = resource("PodMonitor", {
  type: "object",
  additionalProperties: false,
  required: ["selector", "podMetricsEndpoints"],
  properties: {
    jobLabel: { type: "string" },
    selector: labelSelector,
    namespaceSelector,
    podMetricsEndpoints: { type: "array", minItems: 1, items: { type: "object", additionalProperties: false, properties: endpointCommon } },
  },
});
const rule = {
  type: "object",
  additionalProperties: false,
  required: ["expr"],
  // Exactly one of the two: with both, both branches match and oneOf fails.
  oneOf: [{ required: ["alert"] }, { required: ["record"] }],
  properties: {
    alert: { type: "string", minLength: 1 },
    record: { type: "string", minLength: 1 },
    expr: { anyOf: [{ type: "string", minLength: 1 }, { type: "integer" }] },
    for: duration,
    keep_firing_for: duration,
    labels: stringMap,
    annotations: stringMap,
  },
};
const prometheusRule = resource("PrometheusRule", {
  type: "object",
  additionalProperties: false,
  required: ["groups"],
  properties: {
    groups: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "rules"],
        properties: {
          name: { type: "string", minLength: 1 },
          interval: duration,
          query_offset: duration,
          limit: { type: "integer", minimum: 0 },
          labels: stringMap,
          partial_response_strategy: { type: "string" },
          rules: { type: "array", items: rule },
        },
      },
    },
  },
});

// strictRequired is off only because oneOf branches name properties declared one level up.
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
const validators = new Map([
  ["monitoring.coreos.com/v1/ServiceMonitor", ajv.compile(serviceMonitor)],
  ["monitoring.coreos.com/v1/PodMonitor", ajv.compile(podMonitor)],
  ["monitoring.coreos.com/v1/PrometheusRule", ajv.compile(prometheusRule)],
]);

export const customResourceKinds: string[] = [...validators.keys()];

function describe(e: ErrorObject): string {
  const at = e.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(root)";
  if (e.keyword === "additionalProperties") return `${at ? `${at}.` : ""}${(e.params as { additionalProperty: string }).additionalProperty}: unknown field`;
  return `${at}: ${e.message}`;
}

/** Problems with one custom resource ([] if valid). */
export function validateCustomResource(obj: K8sObject): string[] {
  const validate = validators.get(`${obj.apiVersion}/${obj.kind}`);
  if (!validate) return [`no schema for ${obj.apiVersion}/${obj.kind}`];
  return validate(obj) ? [] : (validate.errors ?? []).map(describe);
}
