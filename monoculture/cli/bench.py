"""`monoculture bench`: a simulated round timed against the elliptic-curve floor."""

from __future__ import annotations

import argparse

from monoculture.cli.common import Commands


def add_parser(commands: Commands) -> None:
    bench = commands.add_parser("bench", help="time a simulated round against the EC floor")
    bench.add_argument("--parties", type=int, default=3)
    bench.add_argument("--records", type=int, default=100_000, help="records per company")
    bench.add_argument("--overlap", type=float, default=1.0)
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument(
        "--cost-sample", type=int, default=4000, help="ids per measurement of one operation's cost"
    )
    bench.add_argument(
        "--pool-ids", type=int, default=16 * 2048, help="ids blinded to time the worker pool (default 32768)"
    )
    bench.add_argument(
        "--insecure", action="store_true", help="plaintext transport (to measure what mTLS costs)"
    )
    bench.add_argument(
        "--rerandomise", action="store_true",
        help="re-randomised failure tags (to measure what they cost against masked tags)",
    )  # fmt: skip
    bench.add_argument(
        "--compare-tags", action="store_true",
        help="a round with masked tags, then one with re-randomised tags, and the ratio of their wall times",
    )  # fmt: skip
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from monoculture.research.bench import run_bench

    return run_bench(
        args.parties, args.records, args.overlap, args.seed, insecure=args.insecure,
        cost_sample=args.cost_sample, pool_ids=args.pool_ids, rerandomise=args.rerandomise,
        compare_tags=args.compare_tags,
    )  # fmt: skip
