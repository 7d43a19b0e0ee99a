#!/bin/bash
# Terraform deploy: plan and apply against the state kept in $ADE_STORAGE,
# then write the outputs with ADE types (bool→boolean, list/set/tuple→array,
# map/object→object).
set -e
source "$(dirname "$0")/_common.sh"

terraform -version
terraform init -no-color
terraform plan -no-color -compact-warnings -refresh=true -lock=true \
  -state="$EnvironmentState" -out="$EnvironmentPlan" -var-file="$EnvironmentVars"
terraform apply -no-color -compact-warnings -auto-approve -lock=true \
  -state="$EnvironmentState" "$EnvironmentPlan"

tfout=$(terraform output -state="$EnvironmentState" -json | jq 'with_entries(.value.type |= (
  (if type == "array" then .[0] else . end)
  | if . == "bool" then "boolean"
    elif . == "list" or . == "set" or . == "tuple" then "array"
    elif . == "map" or . == "object" then "object"
    else . end))')
echo "{\"outputs\": $tfout}" >"$ADE_OUTPUTS"
echo "Outputs successfully generated for ADE"
