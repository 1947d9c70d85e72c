"""A loopback TCP proxy that records every byte passing through it (test aid)."""

from __future__ import annotations

import contextlib
import socket
import threading


class WireTap:
    """Listens on 127.0.0.1:0, forwards to `target`, keeps both directions' bytes."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            for source, sink, store in (
                (downstream, upstream, self.to_server),
                (upstream, downstream, self.to_client),
            ):
                threading.Thread(target=self._pump, args=(source, sink, store), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, store: list[bytes]) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    store.append(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def received_by_server(self) -> bytes:
        with self._lock:
            return b"".join(self.to_server)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
