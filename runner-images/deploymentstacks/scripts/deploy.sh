#!/bin/bash
# Deployment Stacks deploy: creates or updates the stack named after the
# environment in its resource group (resources it no longer manages are
# deleted, no deny settings), waits for it, and writes its outputs in ADE
# types (Slipway maps ARM's; secure outputs become sensitive).
set -euo pipefail
source "$(dirname "$0")/_common.sh"

template=$(arm_template)
sign_in
stack=(--subscription "$ADE_SUBSCRIPTION_ID" --resource-group "$ADE_RESOURCE_GROUP_NAME" --name "$ADE_ENVIRONMENT_NAME")
if ! az stack group create "${stack[@]}" --template-file "$template" \
  --parameters "@$ParametersFile" --deny-settings-mode none \
  --action-on-unmanage deleteResources --yes --only-show-errors --output none; then
  echo "Deployment stack $ADE_ENVIRONMENT_NAME failed with the following errors:" >&2
  az stack group show "${stack[@]}" --query error --output json 2>/dev/null |
    jq -r '.. | objects | select(has("code") and has("message")) | "\(.code): \(.message)"' >&2 || true
  exit 1
fi
echo "Deployment stack $ADE_ENVIRONMENT_NAME: Succeeded"
outputs=$(az stack group show "${stack[@]}" --query outputs --output json)
if [ -z "$outputs" ] || [ "$outputs" = "null" ] || [ "$outputs" = "{}" ]; then
  echo "No outputs found for deployment stack"
else
  jq '{outputs: .}' <<<"$outputs" >"$ADE_OUTPUTS"
  echo "Outputs successfully generated for ADE"
fi
