{{/* Labels every object carries; component is the part of Ambit it belongs to. */}}
{{- define "ambit.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* <registry>/<name>:<tag>, the tag defaulting to the chart's appVersion. */}}
{{- define "ambit.image" -}}
{{ .root.Values.image.registry }}/{{ .name }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end }}
