{{/* The chart name, truncated to a DNS label. */}}
{{- define "gpu-rightsizer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name when it already holds the chart name (so
`helm install gpu-rightsizer` gives the names of manifests/), else <release>-<chart>. */}}
{{- define "gpu-rightsizer.fullname" -}}
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

{{- define "gpu-rightsizer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object: Helm's standard ones and the part-of label manifests/ sets. */}}
{{- define "gpu-rightsizer.labels" -}}
helm.sh/chart: {{ include "gpu-rightsizer.chart" . }}
{{ include "gpu-rightsizer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpu-rightsizer
{{- end }}

{{- define "gpu-rightsizer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpu-rightsizer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The webhook's pods (Deployment selector, Service, PDB, spread constraints, NetworkPolicy). */}}
{{- define "gpu-rightsizer.webhookSelectorLabels" -}}
{{ include "gpu-rightsizer.selectorLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "gpu-rightsizer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "gpu-rightsizer.tlsSecret" -}}
{{- include "gpu-rightsizer.fullname" . }}-tls
{{- end }}

{{- define "gpu-rightsizer.policyConfigMap" -}}
{{- include "gpu-rightsizer.fullname" . }}-policy
{{- end }}

{{/* The certs Job's ServiceAccount and roles; the Job adds -<revision>, and a Job's name
becomes a pod label value (at most 63 characters). */}}
{{- define "gpu-rightsizer.certsName" -}}
{{- include "gpu-rightsizer.fullname" . | trunc 50 | trimSuffix "-" }}-certs
{{- end }}

{{/* The names the API server may use for the webhook's Service (webhook/certs.py,
service_dns_names): the serving certificate must carry them all. */}}
{{- define "gpu-rightsizer.dnsNames" -}}
{{- $svc := include "gpu-rightsizer.fullname" . }}
- {{ $svc }}
- {{ $svc }}.{{ .Release.Namespace }}
- {{ $svc }}.{{ .Release.Namespace }}.svc
- {{ $svc }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}

{{/* Refuses values the schema cannot express. */}}
{{- define "gpu-rightsizer.validate" -}}
{{- if and (eq .Values.certificates.mode "external") (not .Values.certificates.caBundle) }}
{{- fail "certificates.mode=external needs certificates.caBundle: the base64-encoded PEM CA that signed the certificate in the Secret <fullname>-tls" }}
{{- end }}
{{- if and (ne .Values.certificates.mode "external") .Values.certificates.caBundle }}
{{- fail (printf "certificates.caBundle is only used with certificates.mode=external (mode is %s, which sets the caBundle itself)" .Values.certificates.mode) }}
{{- end }}
{{- $classes := .Values.policy.workloadClasses | default dict }}
{{- with .Values.policy.defaultWorkloadClass }}
{{- if not (hasKey $classes .) }}
{{- fail (printf "policy.defaultWorkloadClass: %q is not a key of policy.workloadClasses (%s)" . (keys $classes | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}

{{/*
What the webhook must watch for its policy (webhook/serving/cluster_watch.py watched_kinds):
nodes and pods for capacity.mode prefer-free, pods and resourcequotas for quota.mode warn
or gpu-equivalent; empty when both are off. Derived from the policy itself, so the RBAC can
never disagree with it. A bare YAML `off` reaches the template as false.
*/}}
{{- define "gpu-rightsizer.watchedResources" -}}
{{- $kinds := list -}}
{{- if eq (dig "capacity" "mode" "off" .Values.policy | toString) "prefer-free" -}}
{{- $kinds = append (append $kinds "nodes") "pods" -}}
{{- end -}}
{{- if has (dig "quota" "mode" "off" .Values.policy | toString) (list "warn" "gpu-equivalent") -}}
{{- $kinds = append (append $kinds "pods") "resourcequotas" -}}
{{- end -}}
{{- $kinds | uniq | join "," -}}
{{- end -}}
