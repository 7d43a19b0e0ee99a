#!/bin/bash
# Custom deploy: reads the template and parameters, keeps a deployment counter
# in $ADE_STORAGE and writes outputs.
set -e
greeting=$(echo "$ADE_OPERATION_PARAMETERS" | jq -r '.greeting')
replicas=$(echo "$ADE_OPERATION_PARAMETERS" | jq -r '.replicas')
service=$(jq -r '.service' "$ADE_TEMPLATE_FILE")
count=0
if [ -f "$ADE_STORAGE/deployments" ]; then count=$(cat "$ADE_STORAGE/deployments"); fi
count=$((count + 1))
echo "$count" >"$ADE_STORAGE/deployments"
echo "$greeting from $service in $ADE_ENVIRONMENT_NAME ($replicas replicas, deployment #$count)"
jq -n --arg msg "$greeting from $service" --argjson n "$count" --argjson r "$replicas" \
  '{outputs: {message: {type: "string", value: $msg}, deployments: {type: "number", value: $n}, replicas: {type: "number", value: $r}}}' >"$ADE_OUTPUTS"
