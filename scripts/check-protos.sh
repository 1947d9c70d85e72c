#!/usr/bin/env bash
# The proto as a public interface: `buf lint` (protos/buf.yaml) and the breaking-change check
# of protos/ against the proto of the last release, kept in protos-released/ (its README says how
# to move it at a release). buf is the npm package @bufbuild/buf pinned in tools/buf/; this
# installs it there with `npm ci` when it is missing. CI runs this (.ci/run): a missing npm or
# package fails here, loudly, rather than skipping the check.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=tools/buf/node_modules/.bin/buf
if [ ! -x "$buf" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "check-protos: npm is missing, so buf cannot be installed; install Node.js and npm (Debian: apt-get install nodejs npm) and run scripts/check-protos.sh again" >&2
    exit 1
  fi
  if ! npm ci --prefix tools/buf --no-audit --no-fund --loglevel=error; then
    echo "check-protos: could not install @bufbuild/buf (tools/buf/package-lock.json) from the npm registry" >&2
    exit 1
  fi
fi
"$buf" lint protos
"$buf" breaking protos --against protos-released
echo "protos/: buf lint clean, no breaking change against protos-released/ ($("$buf" --version))"
