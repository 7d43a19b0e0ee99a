#!/bin/bash
# Terraform delete: destroy what the stored state holds; no state means
# nothing was ever created, which is a successful delete.
set -e
source "$(dirname "$0")/_common.sh"

if [ ! -f "$EnvironmentState" ]; then
  echo "No state file present. Delete succeeded."
  exit 0
fi

terraform -version
terraform init -no-color
terraform plan -no-color -compact-warnings -refresh=true -lock=true -destroy \
  -state="$EnvironmentState" -out="$EnvironmentPlan" -var-file="$EnvironmentVars"
terraform apply -no-color -compact-warnings -auto-approve -lock=true \
  -state="$EnvironmentState" "$EnvironmentPlan"
