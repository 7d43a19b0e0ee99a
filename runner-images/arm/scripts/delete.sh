#!/bin/bash
# ARM/Bicep delete: a Complete-mode deployment of an empty template removes
# every resource of the environment's resource group; Slipway deletes the
# group itself once this succeeds.
set -euo pipefail
source "$(dirname "$0")/_common.sh"

echo "Deleting the resources of resource group $ADE_RESOURCE_GROUP_NAME"
sign_in
if [ "$(az group exists --subscription "$ADE_SUBSCRIPTION_ID" --name "$ADE_RESOURCE_GROUP_NAME")" = "false" ]; then
  echo "Resource group $ADE_RESOURCE_GROUP_NAME does not exist: nothing to clean up"
  exit 0
fi
az deployment group create --subscription "$ADE_SUBSCRIPTION_ID" \
  --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$deploymentName" \
  --no-prompt true --no-wait --mode Complete --only-show-errors \
  --template-file "$(dirname "$0")/empty.json"
track_deployment "$deploymentName"
