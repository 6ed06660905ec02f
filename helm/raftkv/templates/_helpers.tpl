{{/* The chart name, or nameOverride. */}}
{{- define "raftkv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: "<release>-<chart>", or just the release name when it already
contains the chart name (release "raftkv" -> pods raftkv-0, raftkv-1, ...). 52 characters at most,
so "<name>-headless" and the pods' controller-revision-hash label stay within 63.
*/}}
{{- define "raftkv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives each pod its peer DNS name. */}}
{{- define "raftkv.headlessName" -}}
{{- printf "%s-headless" (include "raftkv.fullname" .) -}}
{{- end -}}

{{/* The DNS suffix of the pods: <headless>.<namespace>.svc.<clusterDomain>. */}}
{{- define "raftkv.headlessDomain" -}}
{{- printf "%s.%s.svc.%s" (include "raftkv.headlessName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "raftkv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "raftkv.labels" -}}
helm.sh/chart: {{ include "raftkv.chart" . }}
{{ include "raftkv.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: raftkv
{{- end -}}

{{/* The labels that select this release's pods (immutable once installed). */}}
{{- define "raftkv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raftkv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftkv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "raftkv.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "raftkv.nodeImage" -}}
{{- printf "%s:%s" .Values.image.node.repository (default .Chart.AppVersion .Values.image.node.tag) -}}
{{- end -}}

{{- define "raftkv.exporterImage" -}}
{{- printf "%s:%s" .Values.image.exporter.repository (default .Chart.AppVersion .Values.image.exporter.tag) -}}
{{- end -}}

{{/*
Checks that stop a bad combination of values with a message that says what to change (Helm's
schema check covers each value alone; these cover values together).
*/}}
{{- define "raftkv.validate" -}}
{{- if or (lt (int .Values.replicaCount) 1) (eq (mod (int .Values.replicaCount) 2) 0) -}}
{{- fail (printf "replicaCount must be odd and at least 1 (3 or 5), got %v: an even number of voters tolerates no more failures than one fewer" .Values.replicaCount) -}}
{{- end -}}
{{- if not .Values.metrics.enabled -}}
{{- range $what := list "serviceMonitor" "podMonitor" "prometheusRule" "dashboard" -}}
{{- if (index $.Values.metrics $what).enabled -}}
{{- fail (printf "metrics.%s.enabled needs metrics.enabled=true: without the exporter sidecar there is nothing to scrape" $what) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "enable metrics.serviceMonitor or metrics.podMonitor, not both: each pod would be scraped twice" -}}
{{- end -}}
{{- if and (or .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled .Values.metrics.prometheusRule.enabled) (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
{{- fail "metrics.serviceMonitor/podMonitor/prometheusRule need the Prometheus Operator's CRDs (API monitoring.coreos.com/v1), which this cluster does not serve; install them first (for `helm template`, pass --api-versions monitoring.coreos.com/v1)" -}}
{{- end -}}
{{- if not (has .Values.podAntiAffinityPreset (list "soft" "hard" "none")) -}}
{{- fail (printf "podAntiAffinityPreset must be soft, hard or none, got %q" .Values.podAntiAffinityPreset) -}}
{{- end -}}
{{- end -}}
