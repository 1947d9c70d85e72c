#!/usr/bin/env bash
# Generates the Python code for protos/ into monoculture/v1/.
# The one way generated code is made; CI runs it with --check and fails on drift.
# grpcio-tools is pinned to 1.72.1: newer releases stamp code for a protobuf
# newer than the 6.30.2 that openmined-psi pins, and that code fails to import.
set -euo pipefail
cd "$(dirname "$0")/.."
out=monoculture/v1
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  out_dir=$tmp
else
  out_dir=.
fi
python -m grpc_tools.protoc -Iprotos \
  --python_out="$out_dir" --grpc_python_out="$out_dir" \
  --mypy_out="$out_dir" --mypy_grpc_out="$out_dir" \
  protos/monoculture/v1/monoculture.proto
if [ "${1:-}" = "--check" ]; then
  for f in monoculture_pb2.py monoculture_pb2.pyi monoculture_pb2_grpc.py monoculture_pb2_grpc.pyi; do
    if ! diff -q "$tmp/$out/$f" "$out/$f" >/dev/null; then
      echo "generated code is stale: $out/$f differs; run scripts/gen-protos.sh and commit" >&2
      exit 1
    fi
  done
  echo "generated code matches protos/"
fi
