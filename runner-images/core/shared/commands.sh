#!/bin/bash
# Helpers for runner scripts (ADE core `shared/commands.sh` contract, reference ade.md §1.4).

# Replaces the ade CLI when `ade upgrade` names a newer build.
upgradeCli() {
  local url
  url=$(ade upgrade 2> >(tee -a "$ADE_ERROR_LOG" >&2))
  if [ -n "$url" ]; then
    verbose "Upgrading ADE CLI to latest version"
    curl -fsSL -o /tmp/ade-upgrade.zip "$url"
    rm -rf /tmp/ade-upgrade && mkdir -p /tmp/ade-upgrade
    unzip -q /tmp/ade-upgrade.zip -d /tmp/ade-upgrade
    cp -f /tmp/ade-upgrade/ade /adecli/ade
  fi
  verbose "ADE CLI is up to date"
}

# Runs a command through `ade execute` and imports the variables it exported.
executeCommand() {
  ade execute --operation "$ADE_OPERATION_NAME" --command $* 2> >(tee -a "$ADE_ERROR_LOG" >&2)
  source /tmp/diff.sh
}

verbose() {
  echo -e "$*"
  ade log --type verbose --operation "$ADE_OPERATION_NAME" --content "$*"
}

header() {
  echo -e "\n>>> $* ...\n"
  ade log --operation "$ADE_OPERATION_NAME" --content "\n>>> $* ...\n"
}

log() {
  echo -e "$*"
  ade log --operation "$ADE_OPERATION_NAME" --content "$*"
}

error() {
  echo -e "$*" >&2
  ade log --operation "$ADE_OPERATION_NAME" --type error --content "$*"
}
