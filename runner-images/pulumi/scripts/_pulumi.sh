#!/bin/bash
# Shared parts of the Pulumi runner scripts: the Pulumi CLI check, the state
# backend (Pulumi Cloud with a pulumiAccessToken / pulumiAccessTokenSecret
# parameter, else the environment's own storage, kept by Slipway between
# operations), the stack's config file and the Azure identity variables.
if ! command -v pulumi >/dev/null 2>&1; then
  echo "This runner image has no Pulumi CLI: run runner-images/build with SLIPWAY_PULUMI_DIR set to a folder holding the pulumi binaries (or with pulumi on the host's PATH) to build it into runner-pulumi." >&2
  exit 4
fi
cd "$(dirname "$ADE_TEMPLATE_FILE")"
PulumiConfigFile="$ADE_STORAGE/Pulumi.$ADE_ENVIRONMENT_NAME.yaml"
export ARM_USE_MSI=true ARM_CLIENT_ID="$ADE_CLIENT_ID" ARM_TENANT_ID="$ADE_TENANT_ID" ARM_SUBSCRIPTION_ID="$ADE_SUBSCRIPTION_ID"

param() { jq -r --arg k "$1" '.[$k] // empty' <<<"${ADE_OPERATION_PARAMETERS:-{\}}"; }

pulumi_login() {
  local token secret_id
  token=$(param pulumiAccessToken)
  secret_id=$(param pulumiAccessTokenSecret)
  if [ -z "$token" ] && [ -n "$secret_id" ]; then
    source /scripts/_common.sh
    sign_in
    token=$(az keyvault secret show --id "$secret_id" --query value --output tsv)
  fi
  if [ -n "$token" ]; then
    export PULUMI_ACCESS_TOKEN="$token"
    pulumi login
  else
    mkdir -p "$ADE_STORAGE"
    export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-}"
    pulumi login "file://$ADE_STORAGE"
  fi
}
