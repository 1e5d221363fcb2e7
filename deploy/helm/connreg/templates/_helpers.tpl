{{- define "connreg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "connreg.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "connreg.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "connreg.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "connreg.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "connreg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* connreg.selector: labels selecting one component ("api" or "projector"). */}}
{{- define "connreg.selector" -}}
app.kubernetes.io/name: {{ include "connreg.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "connreg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "connreg.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "connreg.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* connreg.podSecurityContext: non-root, the distroless nonroot user. */}}
{{- define "connreg.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "connreg.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* connreg.env: the configuration both processes share. */}}
{{- define "connreg.env" -}}
- name: ENV
  value: {{ .Values.config.env | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: STORE_TIMEOUT
  value: {{ .Values.config.storeTimeout | quote }}
- name: DATA_DIR
  value: /tmp/connreg
{{- with .Values.nats.url }}
- name: NATS_URL
  value: {{ . | quote }}
{{- end }}
- name: AUTH_MODE
  value: {{ .Values.auth.mode | quote }}
{{- with .Values.auth.issuer }}
- name: AUTH_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.auth.audience }}
- name: AUTH_AUDIENCE
  value: {{ . | quote }}
{{- end }}
- name: AUTH_ORG_CLAIM
  value: {{ .Values.auth.orgClaim | quote }}
{{- with .Values.auth.productsClaim }}
- name: AUTH_PRODUCTS_CLAIM
  value: {{ . | quote }}
{{- end }}
- name: MONITOR_INTERVAL
  value: {{ .Values.monitor.interval | quote }}
- name: MONITOR_CONCURRENCY
  value: {{ .Values.monitor.concurrency | quote }}
- name: STREAM_REPLICAS
  value: {{ .Values.nats.streamReplicas | quote }}
- name: STREAM_UPDATE
  value: {{ .Values.nats.streamUpdate | quote }}
- name: PROJECTOR_LEASE_TTL
  value: {{ .Values.projector.leaseTTL | quote }}
{{- if .Values.nats.creds.secretName }}
- name: NATS_CREDS
  value: /etc/connreg/nats-creds/{{ .Values.nats.creds.key }}
{{- end }}
{{- if .Values.nats.nkey.secretName }}
- name: NATS_NKEY
  value: /etc/connreg/nats-nkey/{{ .Values.nats.nkey.key }}
{{- end }}
{{- if .Values.nats.tls.caSecretName }}
- name: NATS_CA
  value: /etc/connreg/nats-ca/{{ .Values.nats.tls.caKey }}
{{- end }}
{{- if .Values.nats.tls.clientSecretName }}
- name: NATS_CERT
  value: /etc/connreg/nats-client/tls.crt
- name: NATS_KEY
  value: /etc/connreg/nats-client/tls.key
{{- end }}
{{- with .Values.mongo.uri }}
- name: MONGO_URI
  value: {{ . | quote }}
{{- end }}
- name: MONGO_DATABASE
  value: {{ .Values.mongo.database | quote }}
- name: VAULT_ADDR
  value: {{ .Values.vault.addr | quote }}
- name: VAULT_TRANSIT_MOUNT
  value: {{ .Values.vault.transitMount | quote }}
- name: VAULT_TRANSIT_KEY
  value: {{ .Values.vault.transitKey | quote }}
- name: VAULT_TIMEOUT
  value: {{ .Values.vault.timeout | quote }}
{{- if .Values.vault.caSecretName }}
- name: VAULT_CACERT
  value: /etc/connreg/vault-ca/{{ .Values.vault.caKey }}
{{- end }}
{{- end -}}

{{- define "connreg.envFrom" -}}
{{- if .Values.existingSecret }}
- secretRef:
    name: {{ .Values.existingSecret }}
{{- end }}
{{- end -}}

{{/* connreg.volumes: /tmp (the root filesystem is read-only) and the secret files. */}}
{{- define "connreg.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.nats.creds.secretName }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.creds.secretName }}
    defaultMode: 0400
{{- end }}
{{- if .Values.nats.nkey.secretName }}
- name: nats-nkey
  secret:
    secretName: {{ .Values.nats.nkey.secretName }}
    defaultMode: 0400
{{- end }}
{{- if .Values.nats.tls.caSecretName }}
- name: nats-ca
  secret:
    secretName: {{ .Values.nats.tls.caSecretName }}
{{- end }}
{{- if .Values.nats.tls.clientSecretName }}
- name: nats-client
  secret:
    secretName: {{ .Values.nats.tls.clientSecretName }}
    defaultMode: 0400
{{- end }}
{{- if .Values.vault.caSecretName }}
- name: vault-ca
  secret:
    secretName: {{ .Values.vault.caSecretName }}
{{- end }}
{{- end -}}

{{- define "connreg.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.nats.creds.secretName }}
- name: nats-creds
  mountPath: /etc/connreg/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.nats.nkey.secretName }}
- name: nats-nkey
  mountPath: /etc/connreg/nats-nkey
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.caSecretName }}
- name: nats-ca
  mountPath: /etc/connreg/nats-ca
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.clientSecretName }}
- name: nats-client
  mountPath: /etc/connreg/nats-client
  readOnly: true
{{- end }}
{{- if .Values.vault.caSecretName }}
- name: vault-ca
  mountPath: /etc/connreg/vault-ca
  readOnly: true
{{- end }}
{{- end -}}
