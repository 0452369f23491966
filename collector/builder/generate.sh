#!/usr/bin/env bash
# Regenerate ../otelcol-hopscope (main.go, components.go, go.mod, go.sum) from manifest.yaml
# with the OpenTelemetry Collector Builder at the manifest's release. Developer step only:
# `hopscope up` builds the committed module and never runs the builder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
OCB_VERSION="${OCB_VERSION:-v0.161.0}"
cache="${HOPSCOPE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hopscope}"
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export GOBIN="$cache/ocb/$OCB_VERSION"
if [[ ! -x "$GOBIN/builder" ]]; then
  echo "installing OCB $OCB_VERSION into $GOBIN"
  go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
fi
cd "$here"
"$GOBIN/builder" --config manifest.yaml --skip-compilation
echo "generated $(cd ../otelcol-hopscope && pwd); commit main.go components.go go.mod go.sum"
