#!/usr/bin/env bash
# Stops only the local Kafka (e.g. for fault-injection tests). Idempotent.
# Implementation: sf_kafka_stop in hack/lib/infra.sh.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"

sf_kafka_stop
