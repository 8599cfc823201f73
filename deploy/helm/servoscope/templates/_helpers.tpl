{{/* Names: <release>-<component>, or <release>-servoscope-<component> when the release name does not say servoscope. */}}
{{- define "servoscope.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "servoscope.name" -}}
{{- printf "%s-%s" (include "servoscope.fullname" .root) .component -}}
{{- end -}}

{{- define "servoscope.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "servoscope.labels" -}}
{{ include "servoscope.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: servoscope
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "servoscope.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* Where each component is reached: in-chart Service names, or the external servers. */}}
{{- define "servoscope.redisHost" -}}
{{- if .Values.redis.enabled }}{{ include "servoscope.name" (dict "root" . "component" "redis") }}{{ else }}{{ required "redis.external.host is required when redis.enabled is false" .Values.redis.external.host }}{{ end -}}
{{- end -}}
{{- define "servoscope.redisPort" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.redis.external.port }}{{ end -}}
{{- end -}}
{{- define "servoscope.jaegerHost" -}}
{{- if .Values.jaeger.enabled }}{{ include "servoscope.name" (dict "root" . "component" "jaeger") }}{{ else }}{{ .Values.jaeger.external.host }}{{ end -}}
{{- end -}}
{{- define "servoscope.jaegerPort" -}}
{{- if .Values.jaeger.enabled }}4318{{ else }}{{ .Values.jaeger.external.otlpHttpPort }}{{ end -}}
{{- end -}}

{{/* The environment every servoscope process gets: settings, and where the others are. */}}
{{- define "servoscope.env" -}}
- name: SERVOSCOPE_CONFIG
  value: /etc/servoscope/servoscope.toml
- name: SERVOSCOPE_HOSTS_SERVO
  value: {{ include "servoscope.name" (dict "root" . "component" "servo-controller") }}
- name: SERVOSCOPE_PORTS_SERVO
  value: {{ .Values.servoController.service.port | quote }}
- name: SERVOSCOPE_HOSTS_MOTION
  value: {{ include "servoscope.name" (dict "root" . "component" "motion-planner") }}
- name: SERVOSCOPE_PORTS_MOTION
  value: {{ .Values.motionPlanner.service.port | quote }}
- name: SERVOSCOPE_HOSTS_TELEMETRY
  value: {{ include "servoscope.name" (dict "root" . "component" "telemetry-logger") }}
- name: SERVOSCOPE_PORTS_TELEMETRY
  value: {{ .Values.telemetryLogger.service.port | quote }}
- name: SERVOSCOPE_HOSTS_STATE
  value: {{ include "servoscope.name" (dict "root" . "component" "device-state") }}
- name: SERVOSCOPE_PORTS_STATE
  value: {{ .Values.deviceState.service.port | quote }}
- name: SERVOSCOPE_HOSTS_REDIS
  value: {{ include "servoscope.redisHost" . }}
- name: SERVOSCOPE_PORTS_REDIS
  value: {{ include "servoscope.redisPort" . | quote }}
{{- if or .Values.jaeger.enabled .Values.jaeger.external.host }}
- name: SERVOSCOPE_HOSTS_JAEGER_OTLP_HTTP
  value: {{ include "servoscope.jaegerHost" . }}
- name: SERVOSCOPE_PORTS_JAEGER_OTLP_HTTP
  value: {{ include "servoscope.jaegerPort" . | quote }}
{{- else }}
- name: SERVOSCOPE_TELEMETRY_ENABLED
  value: "false"
{{- end }}
{{- range $key, $value := .Values.settings }}
- name: SERVOSCOPE_{{ $key | upper }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* A servoscope process's container: image, port, probes, security, resources. */}}
{{- define "servoscope.container" -}}
- name: {{ .component }}
  image: {{ include "servoscope.image" . }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  ports:
    - {name: http, containerPort: {{ .port }}, protocol: TCP}
  env:
    - name: SERVOSCOPE_BIND
      value: "0.0.0.0:{{ .port }}"
    {{- include "servoscope.env" .root | nindent 4 }}
    {{- with .env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- include "servoscope.probes" (dict "root" .root "port" "http") | nindent 2 }}
  securityContext:
    {{- toYaml (default .root.Values.containerSecurityContext .securityContext) | nindent 4 }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/servoscope/servoscope.toml, subPath: servoscope.toml, readOnly: true}
    - {name: tmp, mountPath: /tmp}
    {{- with .mounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "servoscope.probes" -}}
{{- $p := .root.Values.probes -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  {{- toYaml $p.startup | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  {{- toYaml $p.readiness | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  {{- toYaml $p.liveness | nindent 2 }}
{{- end -}}

{{/* Pod-level settings every servoscope pod shares. */}}
{{- define "servoscope.podSpec" -}}
securityContext:
  {{- toYaml (default .root.Values.podSecurityContext .podSecurityContext) | nindent 2 }}
{{- with .serviceAccount }}
# The only pod that talks to the API server.
serviceAccountName: {{ . }}
automountServiceAccountToken: true
{{- else }}
automountServiceAccountToken: false
{{- end }}
enableServiceLinks: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "servoscope.podAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
checksum/config: {{ .root.Files.Get "files/servoscope.toml" | sha256sum | trunc 16 }}
{{- end -}}

{{- define "servoscope.configVolumes" -}}
- name: config
  configMap:
    name: {{ include "servoscope.name" (dict "root" .root "component" "config") }}
- name: tmp
  emptyDir: {medium: Memory, sizeLimit: 16Mi}
{{- end -}}

{{- define "servoscope.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "servoscope.name" . }}
  labels:
    {{- include "servoscope.labels" . | nindent 4 }}
spec:
  type: {{ .type | default "ClusterIP" }}
  selector:
    {{- include "servoscope.selectorLabels" . | nindent 4 }}
  ports:
    {{- range .ports }}
    - {name: {{ .name }}, port: {{ .port }}, targetPort: {{ .target | default .name }}, protocol: TCP}
    {{- end }}
{{- end -}}

{{/* The gateway's route table: gateway.routes when given (a whole routes.yaml, e.g.
     helm --set-file gateway.routes=my-routes.yaml), else the repo's gateway/routes.yaml. */}}
{{- define "servoscope.routes" -}}
{{- .Values.gateway.routes | default (.Files.Get "files/routes.yaml") -}}
{{- end -}}
