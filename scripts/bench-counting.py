"""Benchmark of the coordinator's counting step alone (issue 20): wall time, peak RSS, disk per token.

    python scripts/bench-counting.py --records 1000000 --engines buckets,memory,duckdb

Writes k synthetic final lists of --records tokens each (a --shared fraction in every list,
the rest in one list only; masked values sealed as companies seal them) into a coordinator
store (SQLite, as the coordinator keeps received chunks) in --folder, once per size (kept for
the next run), then counts them in a fresh process per engine, reading the store chunk by
chunk as the coordinator does:

- buckets: coordinator/counting.py with a SpillPlan of --memory-mib (bucket files);
- memory: the in-memory path (every list sorted and held);
- duckdb: the same join in DuckDB (pip install duckdb), memory_limit --memory-mib, spilling to
  its temp directory; every tag opened while loading, the shared ones again after the join.

Each prints wall seconds, the counting process's peak RSS (VmHWM) and its RSS before counting,
the bytes written to disk per token, and whether the table is the one the lists were built with.
Synthetic keys only: nothing here is a real round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROUND = "bench-counting"
NAMES = ("alpha", "beta", "gamma", "delta", "epsilon")


def _generate(folder: Path, records: int, parties: int, shared: float) -> None:
    from monoculture.coordinator.store import RoundStore
    from monoculture.core.masks import add_values, lane_values, sub_values, values_to_bytes
    from monoculture.core.psi_crypto import TagOpener, TagSealer
    from monoculture.core.wire import ListAddress, list_chunks

    folder.mkdir(parents=True, exist_ok=True)
    roster = NAMES[:parties]
    common = int(records * shared)
    opener = TagOpener()
    store = RoundStore(folder / "coordinator.sqlite")
    bits = [np.random.default_rng([7, i]).integers(0, 2, common) for i in range(parties)]
    shares = [
        np.random.default_rng([8, i]).integers(0, 2**64, (common, 2), dtype=np.uint64) for i in range(parties)
    ]
    keys = {}
    for position, owner in enumerate(roster):
        started = time.perf_counter()
        values = lane_values(position, parties, bits[position])
        if position == 0:  # the first company's share makes the k values add up to the lanes
            for other in range(1, parties):
                values = add_values(
                    sub_values(values, shares[other]), lane_values(other, parties, bits[other])
                )
        else:
            values = shares[position]
        alone = np.random.default_rng([9, position]).integers(
            0, 2**64, (records - common, 2), dtype=np.uint64
        )
        values = np.concatenate([values, alone])
        tokens = np.random.default_rng(1).bytes(33 * common) + os.urandom(33 * (records - common))
        sealer = TagSealer(ROUND, owner, opener.public_key)
        tags = sealer.seal(values_to_bytes(values))
        keys[owner] = sealer.public_key.hex()
        address = ListAddress(ROUND, owner, parties - 1)
        sender = roster[(position + parties - 1) % parties]
        for chunk in list_chunks(address, sender, tokens, tags):
            store.put_chunk(chunk)
        del values, tokens, tags
        print(f"  list of {owner}: {time.perf_counter() - started:.1f} s", flush=True)
    store.close()
    patterns = sum(b.astype(np.int64) << (parties - 1 - i) for i, b in enumerate(bits))
    expected = np.bincount(patterns, minlength=2**parties).tolist()
    meta = {"roster": roster, "records": records, "opener": opener.private_bytes().hex(), "sealers": keys,
            "expected": expected}  # fmt: skip
    (folder / "lists.json").write_text(json.dumps(meta))


def _sources(folder: Path, meta: dict) -> list:
    from monoculture.coordinator.rounds import StoredFinal
    from monoculture.coordinator.store import RoundStore
    from monoculture.core.psi_crypto import TAG_SIZE
    from monoculture.core.wire import ListAddress

    store = RoundStore(folder / "coordinator.sqlite")
    hop = len(meta["roster"]) - 1
    return [StoredFinal(store, ListAddress(ROUND, o, hop), meta["records"], TAG_SIZE) for o in meta["roster"]]


def _openers(meta: dict) -> dict:
    from monoculture.core.psi_crypto import TagOpener

    opener = TagOpener(bytes.fromhex(meta["opener"]))
    return {o: opener.opener_for(ROUND, o, bytes.fromhex(k)) for o, k in meta["sealers"].items()}


def _count_ours(folder: Path, meta: dict, memory: int, spill: bool) -> dict:
    from monoculture.coordinator.buckets import SpillPlan, SpillStats
    from monoculture.coordinator.counting import count_patterns

    stats = SpillStats()
    plan = SpillPlan(folder / "state", memory, stats) if spill else None
    counted = count_patterns(meta["roster"], _sources(folder, meta), _openers(meta), spill=plan)
    return {"table": list(counted.table.counts), "disk_bytes": stats.disk_bytes, "buckets": stats.buckets}


def _disk_watch(paths: list[Path], peak: list[int], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        size = sum(f.stat().st_size for p in paths if p.exists() for f in p.rglob("*") if f.is_file())
        peak[0] = max(peak[0], size)


def _count_duckdb(folder: Path, meta: dict, memory: int) -> dict:
    import duckdb
    import pyarrow as pa

    from monoculture.coordinator.counting import _masked_sums, _Tally  # the same decoding and tally
    from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE, split_tags

    work = folder / "duckdb"
    work.mkdir(exist_ok=True)
    for stale in work.rglob("*"):
        if stale.is_file():
            stale.unlink()
    peak, stop = [0], threading.Event()
    watcher = threading.Thread(target=_disk_watch, args=([work], peak, stop), daemon=True)
    watcher.start()
    con = duckdb.connect(str(work / "count.db"))
    con.execute(f"SET memory_limit = '{memory // 2**20}MB'")
    con.execute(f"SET temp_directory = '{work / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    token_cols = ["t0", "t1", "t2", "t3", "t4"]  # 4 x 8 bytes + 1
    tag_cols = ["g0", "g1", "g2", "g3", "g4", "g5"]  # 5 x 8 bytes + 4
    openers = _openers(meta)
    roster = meta["roster"]
    for i, source in enumerate(_sources(folder, meta)):
        con.execute(f"CREATE TABLE l{i} (t0 UBIGINT, t1 UBIGINT, t2 UBIGINT, t3 UBIGINT, t4 UTINYINT, "
                    "g0 UBIGINT, g1 UBIGINT, g2 UBIGINT, g3 UBIGINT, g4 UBIGINT, g5 UINTEGER)")  # fmt: skip
        pending: list = []
        for block in [*source.blocks(), None]:
            if block is not None:
                openers[source.owner].open(split_tags(block.tags.tobytes()))  # every tag authenticated
                pending.append((block.tokens, block.tags))
                if sum(len(t) for _, t in pending) < 1 << 17:
                    continue
            if not pending:
                break
            tokens = np.frombuffer(b"".join(t for t, _ in pending), np.uint8).reshape(-1, POINT_SIZE)
            tags = np.concatenate([g for _, g in pending])
            pending = []
            words = np.ascontiguousarray(tokens[:, :32]).view("<u8")
            tag_words = np.ascontiguousarray(tags[:, :40]).view("<u8")
            arrays = [words[:, j] for j in range(4)] + [tokens[:, 32]]
            arrays += [tag_words[:, j] for j in range(5)] + [
                np.ascontiguousarray(tags[:, 40:]).view("<u4")[:, 0]
            ]
            frame = pa.Table.from_arrays([pa.array(a) for a in arrays], names=token_cols + tag_cols)
            con.register("frame", frame)
            con.execute(f"INSERT INTO l{i} SELECT * FROM frame")  # noqa: S608 (our own table names)
            con.unregister("frame")
        repeats = con.execute(
            f"SELECT count(*) - count(DISTINCT ({', '.join(token_cols)})) FROM l{i}"  # noqa: S608
        ).fetchone()
        assert repeats is not None and repeats[0] == 0
    loaded = time.perf_counter()
    select = ", ".join(f"l{i}.{c}" for i in range(len(roster)) for c in tag_cols)
    joins = " ".join(f"JOIN l{i} USING ({', '.join(token_cols)})" for i in range(1, len(roster)))
    reader = con.execute(f"SELECT {select} FROM l0 {joins}").to_arrow_reader(1 << 17)  # noqa: S608
    tally = _Tally(roster)
    for batch in reader:
        columns = []
        for i, owner in enumerate(roster):
            words = np.stack([batch.column(i * 6 + j).to_numpy() for j in range(5)], 1)
            last = batch.column(i * 6 + 5).to_numpy().astype("<u4")
            tags = np.concatenate([words.astype("<u8").view(np.uint8), last.reshape(-1, 1).view(np.uint8)], 1)
            columns.append(openers[owner].open(split_tags(tags.reshape(-1, TAG_SIZE).tobytes())))
        tally.add(*_masked_sums(columns, len(roster), 0))
    stop.set()
    watcher.join()
    return {"table": tally.result().table.counts, "disk_bytes": peak[0], "buckets": 0,
            "load_seconds": loaded - _STARTED}  # fmt: skip


_STARTED = 0.0


def _child(folder: Path, engine: str, memory: int) -> None:
    global _STARTED
    from monoculture.memory import peak_rss_bytes, return_freed_buffers

    return_freed_buffers()  # as the coordinator does (monoculture/cli/daemons.py)
    meta = json.loads((folder / "lists.json").read_text())
    import monoculture.coordinator.counting  # noqa: F401  (imported before the baseline is read)

    before = peak_rss_bytes()
    _STARTED = time.perf_counter()
    if engine == "duckdb":
        out = _count_duckdb(folder, meta, memory)
    else:
        out = _count_ours(folder, meta, memory, spill=engine == "buckets")
    out["seconds"] = time.perf_counter() - _STARTED
    out["rss_before"] = before
    out["peak_rss"] = peak_rss_bytes()
    out["exact"] = list(out.pop("table")) == meta["expected"]
    out["tokens"] = meta["records"] * len(meta["roster"])
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="tokens per company's final list")
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--shared", type=float, default=0.8, help="fraction of tokens in every list")
    parser.add_argument("--engines", default="buckets", help="comma-separated: buckets, memory, duckdb")
    parser.add_argument("--memory-mib", type=int, default=256, help="the counting budget (buckets, duckdb)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "bench-counting")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.folder / f"{args.parties}x{args.records}-{args.shared:g}"
    memory = args.memory_mib * 2**20
    if args.child:
        _child(folder, args.child, memory)
        return
    if not (folder / "lists.json").exists():
        print(f"writing {args.parties} final lists of {args.records} tokens to {folder} ...", flush=True)
        _generate(folder, args.records, args.parties, args.shared)
    for engine in args.engines.split(","):
        command = [sys.executable, __file__, "--child", engine, "--records", str(args.records),
                   "--parties", str(args.parties), "--shared", str(args.shared),
                   "--memory-mib", str(args.memory_mib), "--folder", str(args.folder)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"{engine}: failed\n{done.stderr[-3000:]}")
            continue
        out = json.loads(done.stdout.strip().splitlines()[-1])
        mib = 2**20
        extra = f", loaded in {out['load_seconds']:.1f} s" if "load_seconds" in out else ""
        print(
            f"{engine:8} {args.parties} x {args.records:>10,}: {out['seconds']:7.1f} s{extra}; peak RSS "
            f"{out['peak_rss'] / mib:6.0f} MiB (before counting {out['rss_before'] / mib:.0f} MiB); disk "
            f"{out['disk_bytes'] / out['tokens']:.1f} B per token ({out['disk_bytes'] / mib:.0f} MiB"
            f"{', ' + str(out['buckets']) + ' buckets' if out['buckets'] else ''}); exact: {out['exact']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
