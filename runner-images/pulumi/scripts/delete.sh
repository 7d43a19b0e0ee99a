#!/bin/bash
# Pulumi delete: `pulumi destroy` of the environment's stack.
set -euo pipefail
source "$(dirname "$0")/_pulumi.sh"

pulumi_login
if ! pulumi stack select "$ADE_ENVIRONMENT_NAME" --non-interactive; then
  echo "Stack $ADE_ENVIRONMENT_NAME does not exist: nothing to destroy"
  exit 0
fi
pulumi destroy --refresh --yes --non-interactive --config-file "$PulumiConfigFile"
