#!/bin/bash
# ARM/Bicep deploy: an incremental group deployment of the definition's
# template into the environment's resource group (made by Slipway), followed
# until it ends; its outputs are ADE's (ARM's types are mapped by Slipway,
# SecureString/SecureObject become sensitive).
set -euo pipefail
source "$(dirname "$0")/_common.sh"

template=$(arm_template)
sign_in
az deployment group create --subscription "$ADE_SUBSCRIPTION_ID" \
  --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$deploymentName" \
  --no-prompt true --no-wait --template-file "$template" \
  --parameters "@$ParametersFile" --only-show-errors
track_deployment "$deploymentName"
outputs=$(az deployment group show --subscription "$ADE_SUBSCRIPTION_ID" \
  --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$deploymentName" \
  --query properties.outputs --output json)
if [ -z "$outputs" ] || [ "$outputs" = "null" ] || [ "$outputs" = "{}" ]; then
  echo "No outputs found for deployment"
else
  jq '{outputs: .}' <<<"$outputs" >"$ADE_OUTPUTS"
  echo "Outputs successfully generated for ADE"
fi
