{{/*
Names. The algorithm matches the original chart's, so an upgrade in place keeps every object name and
the DaemonSet's (immutable) selector.
*/}}
{{- define "aksnth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aksnth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aksnth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them (the DaemonSet's selector is immutable). */}}
{{- define "aksnth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aksnth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "aksnth.labels" -}}
helm.sh/chart: {{ include "aksnth.chart" . }}
{{ include "aksnth.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The metadata.annotations block of every object, indented for metadata (nothing when commonAnnotations is
empty). Include it right after the labels block, without a pipe to nindent.
*/}}
{{- define "aksnth.annotations" -}}
{{- with .Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
Image reference. `image` may carry its own tag or digest (the original chart's README passes
`image=repo:tag`); otherwise imageTag, else the chart's appVersion, is appended. Only the last path
segment is looked at, so a registry with a port ("registry:5000/x") is not mistaken for a tag.
*/}}
{{- define "aksnth.image" -}}
{{- $image := .Values.image -}}
{{- $lastSegment := last (splitList "/" $image) -}}
{{- if or (contains "@" $image) (contains ":" $lastSegment) -}}
{{- $image -}}
{{- else -}}
{{- printf "%s:%s" $image (default .Chart.AppVersion .Values.imageTag) -}}
{{- end -}}
{{- end }}

{{- define "aksnth.configMapName" -}}
{{- tpl .Values.configMap.name . }}
{{- end }}

{{/* The Secret the chart creates for secrets.telegramToken / secrets.webhookURL. */}}
{{- define "aksnth.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "aksnth.fullname" . }}
{{- end }}
{{- end }}

{{- define "aksnth.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) (or .Values.secrets.telegramToken .Values.secrets.webhookURL) -}}
true
{{- end -}}
{{- end }}

{{/* API server egress target: the control plane's address when known, anywhere otherwise. */}}
{{- define "aksnth.controlPlaneCIDR" -}}
{{- $ip := .Values.networkPolicy.controlPlaneIP -}}
{{- if contains "/" $ip -}}
{{- $ip -}}
{{- else if contains ":" $ip -}}
{{- printf "%s/128" $ip -}}
{{- else -}}
{{- printf "%s/32" $ip -}}
{{- end -}}
{{- end }}

{{/* Annotations of the pods (empty when there are none). */}}
{{- define "aksnth.podAnnotations" -}}
{{- if .Values.metrics.addAnnotations }}
prometheus.io/port: "17923"
prometheus.io/scrape: "true"
{{- end }}
{{- if .Values.configMap.create }}
{{- /* Roll the pods when a payload template changes: the handler reads them at start-up. */}}
checksum/files: {{ toJson .Values.configMap.data | sha256sum }}
{{- end }}
{{- if include "aksnth.createSecret" . }}
checksum/secret: {{ printf "%s/%s" .Values.secrets.telegramToken .Values.secrets.webhookURL | sha256sum }}
{{- end }}
{{- with .Values.commonAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .Values.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
