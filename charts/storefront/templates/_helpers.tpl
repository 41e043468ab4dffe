{{/* Names, labels and pieces of the Storefront spec. */}}

{{- define "storefront.name" -}}
{{- $name := default .Release.Name .Values.nameOverride -}}
{{- if gt (len $name) 40 -}}
{{- fail (printf "the Storefront name %q is longer than 40 characters (its children are named <name>-<service>): set nameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "storefront.labels" -}}
app.kubernetes.io/name: storefront
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: storefront
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "storefront.adminSecretName" -}}
{{- default (printf "%s-postgres-admin" (include "storefront.name" .)) .Values.postgres.external.adminSecretName -}}
{{- end -}}

{{/* A managed store ({storage, storageClassName, image, resources, deletionPolicy}), empty fields left out. */}}
{{- define "storefront.managedStore" -}}
{{- $out := dict -}}
{{- with .storage }}{{ $_ := set $out "storage" . }}{{ end -}}
{{- with .storageClassName }}{{ $_ := set $out "storageClassName" . }}{{ end -}}
{{- with .image }}{{ $_ := set $out "image" . }}{{ end -}}
{{- with .resources }}{{ $_ := set $out "resources" . }}{{ end -}}
{{- with .deletionPolicy }}{{ $_ := set $out "deletionPolicy" . }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One topic ({partitions, replicationFactor, config}). */}}
{{- define "storefront.topic" -}}
{{- $out := dict "partitions" (int .partitions) -}}
{{- if .replicationFactor }}{{ $_ := set $out "replicationFactor" (int .replicationFactor) }}{{ end -}}
{{- with .config }}{{ $_ := set $out "config" . }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One service ({replicas, resources, autoscaling}). */}}
{{- define "storefront.service" -}}
{{- $out := dict "replicas" (int .replicas) -}}
{{- with .resources }}{{ $_ := set $out "resources" . }}{{ end -}}
{{- if .autoscaling -}}
{{- $a := dict "minReplicas" (int .autoscaling.minReplicas) "maxReplicas" (int .autoscaling.maxReplicas) -}}
{{- with .autoscaling.targetCpuUtilizationPercentage }}{{ $_ := set $a "targetCpuUtilizationPercentage" (int .) }}{{ end -}}
{{- $_ := set $out "autoscaling" $a -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
