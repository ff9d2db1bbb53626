{{/*
Names are fixed, not derived from the release name: the mesh is installed
once per cluster, and other parts know these names (waypoint pods reach the
controller at quicmesh-controller.<namespace>.svc; the CA and the config
stream know the service accounts by name).
*/}}

{{- define "quicmesh.controllerName" -}}quicmesh-controller{{- end }}
{{- define "quicmesh.ztunnelName" -}}ztunnel{{- end }}
{{- define "quicmesh.cniName" -}}quicmesh-cni{{- end }}
{{/* The Secret holding the CA root and key (created by the controller if absent). */}}
{{- define "quicmesh.caSecret" -}}{{ .Values.controller.ca.secretName | default "quicmesh-ca" }}{{- end }}
{{/* The ConfigMap the controller writes the trust bundle (every root) into (key ca.pem); ztunnel's trust bundle. */}}
{{- define "quicmesh.caRootConfigMap" -}}quicmesh-ca-root{{- end }}

{{/* The Service in front of the controllers' SPIFFE bundle endpoint (docs/federation.md). */}}
{{- define "quicmesh.bundleEndpointName" -}}quicmesh-bundle-endpoint{{- end }}

{{/* The controller's gRPC address (CA and config stream) as pods reach it. */}}
{{- define "quicmesh.controllerAddress" -}}
{{ include "quicmesh.controllerName" . }}.{{ .Release.Namespace }}.svc:15012
{{- end }}

{{/* The SPIFFE ID the controller serves with: its service account's. */}}
{{- define "quicmesh.controllerIdentity" -}}
spiffe://{{ .Values.trustDomain }}/ns/{{ .Release.Namespace }}/sa/{{ include "quicmesh.controllerName" . }}
{{- end }}

{{/*
Leader election: with more than one replica, one controller is active (it
holds the Lease quicmesh-controller in the release namespace) and the others
stand by. The flag, the Lease rights (controller-rbac.yaml) and the
PodDisruptionBudget all follow this one test.
*/}}
{{- define "quicmesh.leaderElection" -}}
{{- if gt (int .Values.controller.replicas) 1 }}true{{ end }}
{{- end }}

{{/* <registry>/<name>:<tag>; the names are the Dockerfile's targets. */}}
{{- define "quicmesh.image" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{ $root.Values.image.registry }}/{{ $name }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- end }}

{{- define "quicmesh.labels" -}}
app.kubernetes.io/part-of: quicmesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Pod labels: never captured by ztunnel themselves. */}}
{{- define "quicmesh.podLabels" -}}
app.kubernetes.io/part-of: quicmesh
quicmesh.io/dataplane-mode: none
{{- end }}

{{/* imagePullSecrets, or nothing; use as: with include "quicmesh.pullSecrets" . */}}
{{- define "quicmesh.pullSecrets" -}}
{{- with .Values.image.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "quicmesh.logEnv" -}}
- name: RUST_LOG
  value: {{ .Values.log.level | quote }}
- name: LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end }}

{{/*
Trace export (docs/tracing.md) as the standard OpenTelemetry variables;
nothing while tracing.endpoint is empty. The controller hands them on to
the waypoints it provisions.
*/}}
{{- define "quicmesh.traceEnv" -}}
{{- with .Values.tracing }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The CNI node agent's command line, in one place (docs/cni.md). The host's
CNI directories are mounted at /host/<dir>, host /proc at /host/proc.
*/}}
{{- define "quicmesh.cniArgs" -}}
- agent
- --cni-bin-dir=/host{{ .Values.cni.binDir }}
- --cni-conf-dir=/host{{ .Values.cni.confDir }}
- --ztunnel-socket={{ .Values.ztunnel.socketDir }}/ztunnel.sock
- --host-proc=/host/proc
- --health-addr=0.0.0.0:15021
- --daemonset={{ include "quicmesh.cniName" . }}
{{- end }}

{{/*
The bundle endpoint's values, checked where the schema cannot (it sees no
relations between keys); renders nothing.
*/}}
{{- define "quicmesh.checkBundleEndpoint" -}}
{{- $b := .Values.controller.bundleEndpoint -}}
{{- if $b.enabled }}
{{- if and (eq $b.profile "https_web") (not $b.certSecret) }}
{{- fail "controller.bundleEndpoint.profile=https_web needs controller.bundleEndpoint.certSecret: the name of a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace, e.g. a cert-manager Certificate's" }}
{{- end }}
{{- if and (ne $b.profile "https_web") $b.certSecret }}
{{- fail (printf "controller.bundleEndpoint.certSecret is used only with profile https_web (profile is %s, which serves the controller's own SVID): unset it or set the profile" $b.profile) }}
{{- end }}
{{- if and $b.service.loadBalancerSourceRanges (ne $b.service.type "LoadBalancer") }}
{{- fail (printf "controller.bundleEndpoint.service.loadBalancerSourceRanges needs service.type LoadBalancer (it is %s)" $b.service.type) }}
{{- end }}
{{- if and (hasKey $b.service "nodePort") (eq $b.service.type "ClusterIP") }}
{{- fail "controller.bundleEndpoint.service.nodePort needs service.type NodePort or LoadBalancer (it is ClusterIP)" }}
{{- end }}
{{- end }}
{{- end }}
