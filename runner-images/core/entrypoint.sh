#!/bin/bash
# Slipway core runner entrypoint. Follows the ADE core sequence step by step
# (reference ade.md §1.3): exit-code map, state/output/error-log locations,
# CLI upgrade check, `ade init`, state download, script selection, `ade execute`,
# and a catch handler that uploads state and outputs on every exit and reports
# the operation result on failure.
set -e
trap 'catch $? $LINENO' EXIT

source "/shared/commands.sh"

declare -g -x -A exitCodeMap=(
  ["1"]="DeploymentError"
  ["7"]="InvalidEndpoint"
  ["8"]="InvalidDevCenterId"
  ["9"]="CliSetupError"
  ["10"]="InvalidOperationId"
  ["11"]="RequestFailed"
  ["12"]="InvalidCliInput"
  ["13"]="FileOperationError"
  ["14"]="EnvironmentStorageExceeded"
  ["15"]="SecurityError"
  ["16"]="DeploymentIdentitySignInError"
  ["17"]="CliUpgradeError"
  ["99"]="UnknownError"
)

export ADE_STORAGE=/ade/storage
export ADE_OUTPUTS=/ade/temp/output.json
export ADE_ERROR_LOG=/ade/temp/error.log
mkdir -p "$ADE_STORAGE"
mkdir -p /ade/temp && touch "$ADE_OUTPUTS" && touch "$ADE_ERROR_LOG"

catch() {
  local code=$1
  trap - EXIT
  set +e
  local state=()
  shopt -s nullglob dotglob
  state=("$ADE_STORAGE"/*)
  shopt -u nullglob dotglob
  if ((${#state[@]})); then
    verbose "Uploading environment state from $ADE_STORAGE"
    ade files upload --folder-path "$ADE_STORAGE" 2> >(tee -a "$ADE_ERROR_LOG" >&2)
    local upload=$?
    wait $! 2>/dev/null
    if [ "$upload" -ne 0 ] && [ "$code" -eq 0 ]; then code=$upload; fi
  fi
  if [ -s "$ADE_OUTPUTS" ]; then
    verbose "Uploading outputs"
    ade outputs upload --file "$ADE_OUTPUTS" 2> >(tee -a "$ADE_ERROR_LOG" >&2)
    local outputs=$?
    wait $! 2>/dev/null
    if [ "$outputs" -ne 0 ] && [ "$code" -eq 0 ]; then code=$outputs; fi
  fi
  if [ "$code" -ne 0 ]; then
    local name="${exitCodeMap[$code]}"
    local details=""
    if [ -s "$ADE_ERROR_LOG" ]; then
      details=$(cat "$ADE_ERROR_LOG")
      : >"$ADE_ERROR_LOG"
    fi
    if [ -z "$name" ]; then
      name="UnknownError"
      error "Operation failed with exit code $name, code value $code !!!"
    else
      error "Operation failed with exit code $name !!!"
    fi
    ade operation-result --code "$name" --message "Operation failed with exit code $name ! Additional Error Details: $details"
  else
    log "Operation completed successfully!"
  fi
  exit "$code"
}

on_cancel() {
  trap '' TERM
  kill -TERM 0 2>/dev/null
  wait "$child" 2>/dev/null
  echo "Operation canceled: $ADE_OPERATION_NAME stopped" >>"$ADE_ERROR_LOG"
  exit 143
}

# ADE waits 10 s here for its managed identity endpoint; Slipway injects the
# identity directly, so the default delay is 0.
sleep "${ADE_IDENTITY_DELAY_SECONDS:-0}"

verbose "Checking for ADE CLI updates"
upgradeCli

verbose "Initializing runner"
eval "$(ade init)"

verbose "Downloading environment state to $ADE_STORAGE"
ade files download --file-name storage.zip --folder-path "$ADE_STORAGE" --unzip 2>/dev/null || true

verbose "Selecting catalog directory: $(dirname "$ADE_TEMPLATE_FILE")"
cd "$(dirname "$ADE_TEMPLATE_FILE")"

script=""
if [ "$ADE_ENABLE_CUSTOM_DEPLOY" = "true" ]; then
  verbose "Using custom built-in operation"
  script="$(find "$PWD" -maxdepth 1 -iname "$ADE_OPERATION_NAME.sh" | head -n 1)"
fi
if [ -z "$script" ]; then
  script="$(find /scripts -maxdepth 1 -iname "$ADE_OPERATION_NAME.sh" | head -n 1)"
fi
if [ -z "$script" ]; then
  error "Operation $ADE_OPERATION_NAME is not supported." && exit 1
fi

if [ -f "$script" ] && [ -x "$script" ]; then
  verbose "Executing script ($script)"
  set +e
  # In the background so that a cancel (SIGTERM from Slipway) interrupts the
  # wait at once: the handler stops the script's process group and exits,
  # and the catch handler above still uploads state and outputs.
  ade execute --operation "$ADE_OPERATION_NAME" --command "$script" 2> >(tee -a "$ADE_ERROR_LOG" >&2) &
  child=$!
  trap 'on_cancel' TERM
  wait "$child"
  rc=$?
  trap - TERM
  set -e
  if [ "$rc" -ne 0 ]; then exit "$rc"; fi
elif [ -f "$script" ]; then
  error "Script '$script' is not marked as executable" && exit 1
else
  error "Script '$script' does not exist" && exit 1
fi
