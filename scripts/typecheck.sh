#!/usr/bin/env bash
# mypy --strict over the package as it is installed: monoculture, with the role
# folders client/ and coordinator/ at monoculture.client and monoculture.coordinator
# (setuptools package-dir). mypy maps files to modules by folder, so it checks a
# tree of links laid out as the installed package (.typecheck/, rebuilt each run).
set -euo pipefail
cd "$(dirname "$0")/.."
view=.typecheck
rm -rf "$view"
mkdir -p "$view/monoculture"
for entry in monoculture/*; do
  case "$(basename "$entry")" in __pycache__) continue ;; esac
  ln -s "$PWD/$entry" "$view/monoculture/$(basename "$entry")"
done
ln -s "$PWD/client" "$view/monoculture/client"
ln -s "$PWD/coordinator" "$view/monoculture/coordinator"
cd "$view"
exec python -m mypy --config-file ../pyproject.toml -p monoculture "$@"
