"""The company's sealed round state: what a restarted daemon needs to resume.

One file per round in the state folder, AES-256-GCM sealed under a key kept
beside it (mode 0600), holding the round's blinding scalar, tag and relay
private keys and the shuffle seed (and, for the company a round takes its groups
from, the round's declared group labels). Deleted when the round ends. Never holds
an id or a failure bit. It also holds the SHA-256 digest of the input file as
read at join, so that a restarted daemon refuses to resume over a changed input
rather than re-sealing new data under the same keys and nonces. Files are
created 0600 and never written through a symbolic link.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from monoculture.core.errors import ConfigError
from monoculture.core.sealing import LocalSealer, open_no_follow, write_secret_file

_ROUND_ID = re.compile(r"^r-[0-9a-f]{16}$")


@dataclass(frozen=True)
class RoundSecrets:
    round_id: str
    blinding_key: bytes
    tag_private_key: bytes
    relay_private_key: bytes
    shuffle_seed: bytes
    coordinator_public_key: bytes
    # The labels the round declared, for the company it takes its groups from (its tags carry
    # group codes); empty for every other company and in rounds without groups.
    group_labels: tuple[str, ...] = ()
    # Hex SHA-256 of the company's input file, or of its query's rows, as read at join
    # (client.sources.input_digest); "" in state written before it was recorded.
    input_digest: str = ""
    # The roster in ring order as JoinRound gave it (signed into the enrolment; the work the
    # daemon accepts follows it), and for each list relayed so far, its owner and the SHA-256
    # of the list as received (a list is blinded once at its hop: a restart re-blinds only
    # the same list).
    roster: tuple[str, ...] = ()
    relayed: tuple[tuple[str, str], ...] = ()
    # Protocol v2, once every peer's keys are checked: the transcript digest (round, roster,
    # every signed key) and the pairwise mask key with each peer, by the peer's ring position.
    transcript: bytes = b""
    pair_keys: tuple[tuple[int, bytes], ...] = ()
    # SHA-256 of the round as JoinRound announced it (client.daemon.round_settings), bound into
    # the transcript.
    settings: bytes = b""
    # DP dummies (docs/PROTOCOL.md, "DP dummies"): the round's (epsilon, delta) (0: none), this
    # company's own seed for its singleton's noise (reused on every retry of the round), and its
    # exact record count (the padded size is announced at confirmation).
    dummy_epsilon: float = 0.0
    dummy_delta: float = 0.0
    dummy_seed: bytes = b""
    list_size: int = 0
    # Re-randomised tags (core/rerandomise.py): the coordinator's ElGamal round key (empty: none).
    rerandomise_key: bytes = b""
    # DP dummies: which regions get them (core.dummies.Padding's value; "" without dummies).
    dummy_padding: str = ""
    # Elements per relay chunk, fixed at join ([client] chunk_elements then): a chunk's AES-GCM
    # nonce is its index under a key that survives restarts, so a daemon restarted under another
    # chunk size must still cut its lists as before, or it would seal other elements under an
    # index already sent. 0 in state written before it was recorded (the live setting is used).
    chunk_elements: int = 0
    # Hex SHA-256 of how the input is read (core.dataset.reading_digest: the [data] settings
    # but the path); "" in state written before it was recorded.
    input_reading: str = ""

    def to_json(self) -> bytes:
        fields = asdict(self)
        labels = fields.pop("group_labels")
        roster, relayed = fields.pop("roster"), fields.pop("relayed")
        pair_keys = fields.pop("pair_keys")
        numbers = {
            key: fields.pop(key) for key in ("dummy_epsilon", "dummy_delta", "list_size", "chunk_elements")
        }
        out: dict[str, object] = {k: v if isinstance(v, str) else v.hex() for k, v in fields.items()}
        if labels:
            out["group_labels"] = list(labels)
        out["roster"] = list(roster)
        out["relayed"] = {owner: digest for owner, digest in relayed}
        out["pair_keys"] = {str(position): key.hex() for position, key in pair_keys}
        out.update(numbers)
        return json.dumps(out).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RoundSecrets:
        raw = json.loads(data)
        keys = (
            "blinding_key",
            "tag_private_key",
            "relay_private_key",
            "shuffle_seed",
            "coordinator_public_key",
        )
        blinding, tag, relay, seed, coordinator = (bytes.fromhex(raw[k]) for k in keys)
        labels = tuple(str(label) for label in raw.get("group_labels", ()))
        digest = str(raw.get("input_digest", ""))
        roster = tuple(str(name) for name in raw.get("roster", ()))
        relayed = tuple((str(owner), str(seen)) for owner, seen in raw.get("relayed", {}).items())
        transcript = bytes.fromhex(raw.get("transcript", ""))
        settings = bytes.fromhex(raw.get("settings", ""))
        dummy_seed = bytes.fromhex(raw.get("dummy_seed", ""))
        pairs = tuple((int(at), bytes.fromhex(key)) for at, key in raw.get("pair_keys", {}).items())
        return cls(
            raw["round_id"], blinding, tag, relay, seed, coordinator, labels, digest, roster, relayed,
            transcript, pairs, settings, float(raw.get("dummy_epsilon", 0.0)),
            float(raw.get("dummy_delta", 0.0)), dummy_seed, int(raw.get("list_size", 0)),
            bytes.fromhex(raw.get("rerandomise_key", "")), str(raw.get("dummy_padding", "")),
            int(raw.get("chunk_elements", 0)), str(raw.get("input_reading", "")),
        )  # fmt: skip


def make_state_folder(folder: Path) -> None:
    """Create [client] state_dir (mode 0700) if it is missing; a ConfigError naming it if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the state folder ({exc.strerror})",
            where=str(folder),
            hint="[client] state_dir must be a folder this daemon can write "
            "(under systemd, inside the unit's StateDirectory)",
        ) from None


class SecretStore:
    def __init__(self, folder: Path, company: str) -> None:
        make_state_folder(folder)
        self._folder = folder
        self._company = company
        self._sealer = LocalSealer(folder / "state.key")

    def _path(self, round_id: str) -> Path:
        if not _ROUND_ID.match(round_id):
            raise ConfigError(f"unexpected round id {round_id!r}")
        return self._folder / f"round-{round_id}.sealed"

    def _context(self, round_id: str) -> bytes:
        return f"monoculture/v1 company state|{self._company}|{round_id}".encode()

    def save(self, secrets: RoundSecrets) -> None:
        path = self._path(secrets.round_id)
        tmp = path.with_suffix(".tmp")
        # A file or link planted at the temporary name is removed (unlink never follows a link),
        # then the file is created afresh, 0600, with O_EXCL: never written through a link.
        tmp.unlink(missing_ok=True)
        write_secret_file(
            tmp, self._sealer.seal(secrets.to_json(), self._context(secrets.round_id)), exclusive=True
        )
        tmp.replace(path)  # a rename replaces a link at `path`, never follows it

    def load(self, round_id: str) -> RoundSecrets | None:
        """The round's sealed state, or None if there is none; read without following a link."""
        path = self._path(round_id)
        try:
            descriptor = open_no_follow(
                path, os.O_RDONLY, "round state is never read through one",
                hint="remove the link (and find out who made it)",
            )  # fmt: skip
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot be read ({exc.strerror})", where=str(path)) from None
        with os.fdopen(descriptor, "rb") as handle:
            sealed = handle.read()
        return RoundSecrets.from_json(self._sealer.open(sealed, self._context(round_id)))

    def delete(self, round_id: str) -> None:
        self._path(round_id).unlink(missing_ok=True)
