{{- define "aigate.name" -}}aigate{{- end -}}

{{- define "aigate.labels" -}}
app.kubernetes.io/name: aigate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aigate.selectorLabels" -}}
app.kubernetes.io/name: aigate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aigate.fullname" -}}
{{- if eq .Release.Name "aigate" -}}aigate{{- else -}}{{ printf "%s-aigate" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "aigate.requiredPolicy" -}}
{{- .Values.approvals.requiredPolicyName | default (printf "%s-approvals" (include "aigate.fullname" .)) -}}
{{- end -}}

{{- define "aigate.approverKeys" -}}
{{- .Values.approverKeys.name | default (printf "%s-approver-keys" (include "aigate.fullname" .)) -}}
{{- end -}}
