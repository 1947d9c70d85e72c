"""Write the example configs in deploy/ from the config dataclasses of the two roles.

    .venv/bin/python scripts/gen-deploy.py           # rewrite deploy/
    .venv/bin/python scripts/gen-deploy.py --check   # exit 1, showing the differences, if deploy/ is stale

The keys, defaults and comments come from client/config.py and coordinator/config.py;
the example values from monoculture.research.deploy.deploy_examples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monoculture.research.deploy import deploy_differences, write_deploy_examples

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def main() -> int:
    """Rewrite deploy/, or with --check only compare it; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if deploy/ differs")
    args = parser.parse_args()
    if args.check:
        differences = deploy_differences(DEPLOY)
        sys.stdout.writelines(differences)
        if differences:
            print(f"\n{DEPLOY} differs from the dataclasses: run scripts/gen-deploy.py", file=sys.stderr)
            return 1
        return 0
    for name in write_deploy_examples(DEPLOY):
        print(f"wrote {DEPLOY / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
