#!/bin/bash
# Pulumi deploy: one stack per environment, ADE parameters as stack config
# (plus the location and resource group), `pulumi up`, and the stack's
# outputs in ADE types (secret outputs are sensitive).
set -euo pipefail
source "$(dirname "$0")/_pulumi.sh"

pulumi version
pulumi_login
pulumi stack select "$ADE_ENVIRONMENT_NAME" --create --non-interactive
[ -z "${ADE_ENVIRONMENT_LOCATION:-}" ] ||
  pulumi config set --config-file "$PulumiConfigFile" -- azure-native:location "$ADE_ENVIRONMENT_LOCATION"
[ -z "${ADE_RESOURCE_GROUP_NAME:-}" ] ||
  pulumi config set --config-file "$PulumiConfigFile" -- resource-group-name "$ADE_RESOURCE_GROUP_NAME"
while IFS=$'\t' read -r key value; do
  pulumi config set --config-file "$PulumiConfigFile" -- "$key" "$value"
done < <(jq -r 'to_entries[] | select(.key != "pulumiAccessToken" and .key != "pulumiAccessTokenSecret")
  | [.key, (.value | if type == "string" then . else tojson end)] | @tsv' <<<"${ADE_OPERATION_PARAMETERS:-{\}}")
if [ -f package.json ]; then npm install; fi
pulumi up --refresh --yes --non-interactive --config-file "$PulumiConfigFile"
shown=$(pulumi stack output --json --show-secrets)
masked=$(pulumi stack output --json)
jq -n --argjson shown "$shown" --argjson masked "$masked" '{outputs: ($shown | with_entries(
  .value = {type: (.value | type | if . == "null" then "string" else . end), value: .value,
            sensitive: ($masked[.key] == "[secret]")}))}' >"$ADE_OUTPUTS"
echo "Outputs successfully generated for ADE"
