#!/bin/bash
# Deployment Stacks delete: deletes the environment's stack and the
# resources it manages; Slipway deletes the resource group afterwards.
set -euo pipefail
source "$(dirname "$0")/_common.sh"

sign_in
stack=(--subscription "$ADE_SUBSCRIPTION_ID" --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$ADE_ENVIRONMENT_NAME")
if [ "$(az group exists --subscription "$ADE_SUBSCRIPTION_ID" --name "$ADE_RESOURCE_GROUP_NAME")" = "false" ] ||
  ! az stack group show "${stack[@]}" --only-show-errors --output none 2>/dev/null; then
  echo "Deployment stack $ADE_ENVIRONMENT_NAME does not exist: nothing to delete"
  exit 0
fi
echo "Deleting deployment stack $ADE_ENVIRONMENT_NAME and its resources"
az stack group delete "${stack[@]}" --action-on-unmanage deleteResources --yes --only-show-errors
echo "Deployment stack $ADE_ENVIRONMENT_NAME deleted"
