"""openmined-psi's two-party cardinality protocol run as it would be deployed: the client and the
server each in their own process, talking over loopback, each overlapping what the protocol lets it.

The benchmark's fair reference for a two-company round (`monoculture bench --parties 2`):

    server:  setup(server ids) ............ process(request) -> response
    client:  request(client ids) -> ...................................... size(setup, response)

The server's setup and the client's request need nothing from each other, so they run at once, one on
each core; the server then re-blinds the request, and the client takes its key off the answer and
looks each point up in the server's set. Run as a module it is one of the two sides:

    python -P -m monoculture.research.psi_peers server FILE     # prints its port, then waits for "go"
    python -P -m monoculture.research.psi_peers client FILE PORT

Each side reads its ids (the file checks of every input), says "ready", and starts on the line "go"
from its parent, which times from "go" to the client's answer.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.psi_crypto import PsiClientSide, PsiServerSide

_LENGTH = struct.Struct(">Q")


@dataclass(frozen=True)
class PeerRun:
    """One run of the two-process protocol: wall time from "go" to the size, the size, and each
    step's seconds on its own side."""

    seconds: float
    size: int
    steps: dict[str, float]


def _send(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(_LENGTH.pack(len(payload)) + payload)


def _receive(conn: socket.socket) -> bytes:
    size = _LENGTH.unpack(_exactly(conn, _LENGTH.size))[0]
    return _exactly(conn, size)


def _exactly(conn: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = conn.recv(min(left, 1 << 20))
        if not part:
            raise ConnectionError("the other side of the PSI benchmark closed the connection")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _ids(path: str) -> list[str]:
    return load_records(InputSpec(Path(path))).id_list()


def _ready(out: IO[str], line: str = "ready") -> None:
    out.write(line + "\n")
    out.flush()


def _wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("psi_peers: expected 'go' on standard input")


def serve(path: str) -> dict[str, float]:
    """The server side: set up while the client makes its request, then answer it."""
    ids, side = _ids(path), PsiServerSide()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        _ready(sys.stdout, f"port {listener.getsockname()[1]}")
        conn, _ = listener.accept()
        with conn:
            _wait_for_go()
            started = time.perf_counter()
            client_size = _LENGTH.unpack(_exactly(conn, _LENGTH.size))[0]
            setup = side.setup(ids, client_size)
            setup_done = time.perf_counter()
            request = _receive(conn)  # read whole before sending: neither side blocks the other
            received = time.perf_counter()
            response = side.process(request)
            finished = time.perf_counter()
            _send(conn, setup)
            _send(conn, response)
    return {"server setup": setup_done - started, "server process": finished - received}


def ask(path: str, port: int) -> dict[str, float]:
    """The client side: make the request while the server sets up, then count."""
    ids, side = _ids(path), PsiClientSide()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        _ready(sys.stdout)
        _wait_for_go()
        started = time.perf_counter()
        conn.sendall(_LENGTH.pack(len(ids)))
        request = side.request(ids)
        request_done = time.perf_counter()
        _send(conn, request)
        setup = _receive(conn)
        response = _receive(conn)
        answered = time.perf_counter()
        size = side.size(setup, response)
        finished = time.perf_counter()
    return {"client request": request_done - started, "client size": finished - answered, "size": size}


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "monoculture.research.psi_peers", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"a PSI benchmark process ended early (status {process.wait()})")
    return line


def _end(peer: subprocess.Popen[str]) -> None:
    """Wait for a side to exit (it does once it has printed its steps); kill it if it is stuck."""
    try:
        status = peer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        peer.kill()
        peer.wait()
        raise RuntimeError("a PSI benchmark process did not finish; it was killed") from None
    if status != 0:
        raise RuntimeError(f"a PSI benchmark process failed (status {status})")


def run_two_processes(client_file: Path, server_file: Path) -> PeerRun:
    """openmined-psi's cardinality protocol with the client and the server as two processes."""
    server = _spawn(["server", str(server_file)])
    client: subprocess.Popen[str] | None = None
    try:
        port = int(_line(server).removeprefix("port "))
        client = _spawn(["client", str(client_file), str(port)])
        _line(client)  # ready: ids read and connected
        started = time.perf_counter()
        for process in (server, client):
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        client_steps = json.loads(_line(client))
        seconds = time.perf_counter() - started
        server_steps = json.loads(_line(server))
    except BaseException:
        for peer in (server, client):
            if peer is not None:
                peer.kill()
                peer.wait()
        raise
    _end(server)
    _end(client)
    size = int(client_steps.pop("size"))
    return PeerRun(seconds, size, {**server_steps, **client_steps})


def expected_ratio(
    ours: Sequence[tuple[int, int]], theirs: tuple[int, int], create: float, multiply: float
) -> float:
    """Our round's critical path over openmined's, from operation counts: `ours` holds each company's
    (hash-to-curve + multiply, multiply-only) counts, each company on its own core; `theirs` is
    (client size, server size). `create`, `multiply`: the measured cost of each operation.

    Ours: a company blinds its own list and then relays the other's; the slower company sets the
    pace. Theirs: the request and the setup at once, then the server's re-blinding of the request,
    then the client's unblinding of it."""
    client, server = theirs
    ours_path = max(own * create + relayed * multiply for own, relayed in ours)
    theirs_path = max(client, server) * create + 2 * client * multiply
    return ours_path / theirs_path


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "server":
        print(json.dumps(serve(argv[1])), flush=True)
        return 0
    if len(argv) == 3 and argv[0] == "client":
        print(json.dumps(ask(argv[1], int(argv[2]))), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
