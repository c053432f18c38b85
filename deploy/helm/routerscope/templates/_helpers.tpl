{{/* Names: with the release named "routerscope" they equal the kustomize manifests'. */}}
{{- define "routerscope.agentName" -}}
{{- printf "%s-agent" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "routerscope.configName" -}}
{{- printf "%s-config" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "routerscope.labels" -}}
app.kubernetes.io/name: routerscope
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: routerscope
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The DaemonSet's selector: stable across upgrades. */}}
{{- define "routerscope.selectorLabels" -}}
app.kubernetes.io/name: routerscope
app.kubernetes.io/component: node-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Probe files by name: the chart's semantic-router.yaml, then .Values.probeFiles over it. */}}
{{- define "routerscope.probeFiles" -}}
{{- $files := dict "semantic-router.yaml" (.Files.Get "files/probes/semantic-router.yaml") -}}
{{- range $name, $body := .Values.probeFiles }}
{{- $_ := set $files $name $body -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}
