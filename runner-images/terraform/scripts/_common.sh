#!/bin/bash
# Shared setup of the Terraform runner scripts (ADE Terraform runner contract,
# reference ade.md §1.8): state, plan and variable file locations, provider
# identity variables and the TF_VAR_* exports.
EnvironmentState="$ADE_STORAGE/environment.tfstate"
EnvironmentPlan="/environment.tfplan"
EnvironmentVars="/environment.tfvars.json"

echo "$ADE_OPERATION_PARAMETERS" >"$EnvironmentVars"

export ARM_USE_MSI=true
export ARM_CLIENT_ID="$ADE_CLIENT_ID"
export ARM_TENANT_ID="$ADE_TENANT_ID"
export ARM_SUBSCRIPTION_ID="$ADE_SUBSCRIPTION_ID"

export TF_VAR_resource_group_name="$ADE_RESOURCE_GROUP_NAME"
export TF_VAR_ade_env_name="$ADE_ENVIRONMENT_NAME"
export TF_VAR_env_name="$ADE_ENVIRONMENT_NAME"
export TF_VAR_ade_subscription="$ADE_SUBSCRIPTION_ID"
export TF_VAR_ade_location="$ADE_ENVIRONMENT_LOCATION"
export TF_VAR_ade_environment_type="$ADE_ENVIRONMENT_TYPE"
