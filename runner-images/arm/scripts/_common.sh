#!/bin/bash
# Shared parts of the ARM/Bicep runner scripts (ADE's ARM-Bicep runner
# contract, reference ade.md §1.6): the deployment name, the ARM parameter
# file, the template (Bicep and linked templates need a bicep binary), a
# bounded managed-identity sign-in and deployment tracking.
deploymentName=$(date -u +"%Y-%m-%d-%H%M%S")
ParametersFile=/tmp/deployment.parameters.json

# ADE parameters → an ARM deployment parameter file.
echo "${ADE_OPERATION_PARAMETERS:-{\}}" | jq --compact-output '{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  "parameters": (to_entries | map({(.key): {"value": .value}}) | add // {})
}' >"$ParametersFile"

require_bicep() { # why
  if ! command -v bicep >/dev/null 2>&1; then
    echo "$1 needs the bicep CLI, which this runner image does not have: put a bicep binary on the PATH of the host that runs runner-images/build (it is copied into runner-arm), or publish the definition as ARM JSON (bicep build main.bicep)." >&2
    exit 4
  fi
}

# The template to deploy: Bicep as is (az calls bicep), JSON as is, and JSON
# with relativePath linked templates rebuilt into one template through bicep.
arm_template() {
  local t="$ADE_TEMPLATE_FILE"
  case "$t" in
    *.bicep)
      require_bicep "Bicep template $(basename "$t")"
      ;;
    *.json)
      if jq -e '[.. | objects | select(has("templateLink") and (.templateLink | has("relativePath")))] | any' "$t" >/dev/null; then
        require_bicep "Linked template $(basename "$t")"
        echo "Resolving linked ARM templates" >&2
        bicep decompile "$t" --outfile "${t%.json}.bicep" >&2
        bicep build "${t%.json}.bicep" --outfile "${t%.json}.generated.json" >&2
        t="${t%.json}.generated.json"
      fi
      ;;
  esac
  echo "$t"
}

# Signs in with the runner's managed identity (Slipway's IDENTITY_ENDPOINT),
# retrying for at most a minute: a sign-in that never works is ADE's
# DeploymentIdentitySignInError (exit 16), not an endless loop.
sign_in() {
  local attempt
  for attempt in $(seq 1 12); do
    if az login --identity --allow-no-subscriptions --only-show-errors --output none; then
      echo "Successfully signed into Azure"
      az account set --subscription "$ADE_SUBSCRIPTION_ID"
      return 0
    fi
    echo "Sign-in attempt $attempt failed; retrying in 5 seconds" >&2
    sleep 5
  done
  echo "Could not sign into Azure with the deployment identity" >&2
  exit 16
}

# Follows deployment $1 in the resource group until it ends, printing each
# operation's state once; a failed or canceled deployment prints ARM's errors
# and exits 1.
track_deployment() {
  local name=$1 state seen=" "
  while true; do
    state=$(az deployment group show --subscription "$ADE_SUBSCRIPTION_ID" \
      --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$name" \
      --query properties.provisioningState --output tsv)
    while IFS=$'\t' read -r id op st target; do
      [ -n "$id" ] || continue
      case "$seen" in *" $id|$st "*) continue ;; esac
      seen="$seen$id|$st "
      echo "$(date -u +%H:%M:%S) $op $target ($st)"
    done < <(az deployment operation group list --subscription "$ADE_SUBSCRIPTION_ID" \
      --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$name" --output json |
      jq -r '.[] | [.operationId, .properties.provisioningOperation, .properties.provisioningState, (.properties.targetResource.id // "")] | @tsv')
    case "${state,,}" in
      succeeded)
        echo "Deployment $name: $state"
        return 0
        ;;
      failed | canceled)
        echo "Deployment $name: $state" >&2
        az deployment group show --subscription "$ADE_SUBSCRIPTION_ID" \
          --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$name" \
          --query properties.error --output json |
          jq -r '"Deployment failed with the following errors:",
                 (.. | objects | select(has("code") and has("message")) | "\(.code): \(.message)")' >&2
        exit 1
        ;;
    esac
    sleep 2
  done
}
