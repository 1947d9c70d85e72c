"""A throwaway PostgreSQL server for tests: Debian's binaries, a cluster in a temporary folder,
listening on 127.0.0.1 (a free port) and on a socket in that folder, stopped and deleted at the end.

initdb refuses to run as root: as root the server runs as the `postgres` system user (runuser);
as anyone else, as that user. Every role logs in with a password (scram-sha-256).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BINARIES = "/usr/lib/postgresql"
OWNER = "owner"


def binaries() -> Path | None:
    """The newest installed server's bin/ folder, or None."""
    found = sorted(Path(BINARIES).glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def why_not_available() -> str:
    """Why a server cannot be started here ("" when it can)."""
    if binaries() is None:
        return (
            f"PostgreSQL's server binaries are not installed ({BINARIES}/*/bin; apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres system user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root, and runuser (to start the server as postgres) is missing"
    return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int
    owner_password: str
    _bin: Path

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, user: str = OWNER, password: str | None = None, database: str = "postgres") -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql+psycopg://{user}{secret}@{self.host}:{self.port}/{database}"

    def execute(self, *statements: str, rows: list[tuple[object, ...]] | None = None) -> None:
        """Run SQL as the owner (rows: parameters for the last statement, executemany)."""
        import psycopg

        conninfo = f"host={self.host} port={self.port} user={OWNER} dbname=postgres"
        with psycopg.connect(conninfo, password=self.owner_password, autocommit=True) as connection:
            for statement in statements[:-1]:
                connection.execute(statement)  # type: ignore[arg-type]
            with connection.cursor() as cursor:
                if rows is None:
                    cursor.execute(statements[-1])  # type: ignore[arg-type]
                else:
                    cursor.executemany(statements[-1], rows)  # type: ignore[arg-type]

    @classmethod
    def start(cls) -> PostgresServer:
        bin_folder = binaries()
        assert bin_folder is not None
        folder = Path(tempfile.mkdtemp(prefix="monoculture-pg-"))
        server = cls(folder, _free_port(), secrets.token_urlsafe(16), bin_folder)
        password_file = folder / "owner-password"
        password_file.write_text(server.owner_password + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(password_file, "postgres")
        server._run(
            "initdb", "-D", str(folder / "data"), "-U", OWNER, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c fsync=off"
        server._run("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w",
                    "-o", options, "start")  # fmt: skip
        return server

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stderr[-2000:]}\n{tail}")
