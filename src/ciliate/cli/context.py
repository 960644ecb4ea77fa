"""The environment a command runs in: state directory, output streams, the store.

Injected so that tests drive commands through ``main(argv, ctx)`` and read the output.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ciliate.store.api import Store


def default_state_dir() -> Path:
    """``$CILIATE_STATE``, else ``$XDG_STATE_HOME/ciliate``, else ``~/.local/state/ciliate``."""
    env = os.environ.get("CILIATE_STATE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "ciliate"


@dataclass
class Context:
    state_dir: Path = field(default_factory=default_state_dir)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    _store: Store | None = None

    @property
    def store_path(self) -> Path:
        return self.state_dir / "store.db"

    def store(self) -> Store:
        """The cluster store of this state directory (opened once, created if missing)."""
        if self._store is None:
            from ciliate.store.sqlite import SQLiteStore

            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._store = SQLiteStore(self.store_path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
