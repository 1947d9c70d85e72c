"""A loopback TCP proxy that records every byte passing through it and can
cut or stall connections mid-stream (test aid)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class WireTap:
    """Listens on 127.0.0.1:0 and forwards to `target_port`.

    `cut_after`: for the first connections, one byte budget each (client to
    server); a connection is cut once it has carried that many bytes.
    `stall_after` / `stall_seconds`: after that many bytes on a connection, pause it once.
    """

    def __init__(
        self,
        target_port: int,
        cut_after: list[int] | None = None,
        stall_after: int | None = None,
        stall_seconds: float = 0.0,
    ) -> None:
        self._target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []
        self._cuts = list(cut_after or [])
        self._stall_after = stall_after
        self._stall_seconds = stall_seconds
        self.cuts_done = 0
        self.stalls_done = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                budget = self._cuts.pop(0) if self._cuts else None
            pair = (downstream, upstream)
            threading.Thread(target=self._pump, args=(downstream, upstream, self.to_server, budget, pair),
                             daemon=True).start()  # fmt: skip
            threading.Thread(target=self._pump, args=(upstream, downstream, self.to_client, None, pair),
                             daemon=True).start()  # fmt: skip

    def _pump(self, source: socket.socket, sink: socket.socket, store: list[bytes], budget: int | None,
              pair: tuple[socket.socket, socket.socket]) -> None:  # fmt: skip
        carried = 0
        stalled = False
        try:
            while data := source.recv(65536):
                carried += len(data)
                if budget is not None and carried > budget:
                    with self._lock:
                        self.cuts_done += 1
                    break  # cut: both directions are closed below
                if self._stall_after is not None and not stalled and carried > self._stall_after:
                    stalled = True
                    with self._lock:
                        self.stalls_done += 1
                    time.sleep(self._stall_seconds)
                with self._lock:
                    store.append(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def received_by_server(self) -> bytes:
        with self._lock:
            return b"".join(self.to_server)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
