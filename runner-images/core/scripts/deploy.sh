#!/bin/bash
# Placeholder operation of the core image: it does nothing and succeeds.
echo -e "\nThe action ${ADE_OPERATION_NAME^^} is not implemented yet!"
