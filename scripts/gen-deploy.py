"""Write the example configs in deploy/ and docs/CONFIGURATION.md from the config dataclasses.

    .venv/bin/python scripts/gen-deploy.py           # rewrite deploy/
    .venv/bin/python scripts/gen-deploy.py --check   # exit 1, showing the differences, if deploy/ is stale

The keys, defaults and comments come from client/config.py and coordinator/config.py;
the example values from monoculture.research.deploy.deploy_examples.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from monoculture.research.deploy import configuration_reference, deploy_differences, write_deploy_examples

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REFERENCE = DEPLOY.parent / "docs" / "CONFIGURATION.md"


def reference_differences() -> list[str]:
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    return list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            configuration_reference().splitlines(keepends=True),
            fromfile=f"{REFERENCE} (as it is)",
            tofile=f"{REFERENCE} (from the dataclasses)",
        )
    )


def main() -> int:
    """Rewrite deploy/, or with --check only compare it; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if deploy/ differs")
    args = parser.parse_args()
    if args.check:
        differences = deploy_differences(DEPLOY) + reference_differences()
        sys.stdout.writelines(differences)
        if differences:
            print(f"\n{DEPLOY} or {REFERENCE} differs from the dataclasses: run scripts/gen-deploy.py",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    for name in write_deploy_examples(DEPLOY):
        print(f"wrote {DEPLOY / name}")
    if reference_differences():
        REFERENCE.write_text(configuration_reference(), encoding="utf-8")
        print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
