#!/bin/bash
set -e
echo "deleting $ADE_ENVIRONMENT_NAME after $(cat "$ADE_STORAGE/deployments" 2>/dev/null || echo 0) deployments"
