"""Where the worker keeps its account entries: memory (default) or RocksDB on local disk.

Either way the compacted changelog topic is the durable copy, and a worker restores its partitions
from it when they are assigned. The RocksDB store (``rocksdict``) only lets account state outgrow RAM:
the most recently used entries stay in memory as objects, the others live on disk as their changelog
value (compressed JSON). It is **wiped when opened** and never trusted across restarts: a crashed
worker may have written state of a batch whose Kafka transaction then aborted, and an account history
holding a transaction that was never committed would make its replay look like a duplicate (skipped,
so lost). Restoring from the changelog, as the memory store does, is what keeps the guarantee.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any


class RocksEntries(MutableMapping[str, Any]):
    """account -> entry on RocksDB, with the ``cache_size`` most recently used entries in memory.

    An entry leaves memory only through eviction, and is written to disk then (``encode``), so the
    object a caller holds is the current one until ``cache_size`` other accounts have been used.
    """

    def __init__(self, path: Path, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
                 cache_size: int = 100_000):
        from rocksdict import Options, Rdict

        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.path = Path(path)
        shutil.rmtree(self.path, ignore_errors=True)  # scratch space: see the module docstring
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), Options(raw_mode=True))
        self._encode, self._decode = encode, decode
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._size = cache_size
        self._n = 0  # accounts stored (in memory or on disk)

    def __getitem__(self, account: str) -> Any:
        entry = self._cache.get(account)
        if entry is not None:
            self._cache.move_to_end(account)
            return entry
        raw = self._db.get(account.encode())
        if raw is None:
            raise KeyError(account)
        entry = self._decode(raw)
        self._remember(account, entry)
        return entry

    def __setitem__(self, account: str, entry: Any) -> None:
        if account not in self._cache and self._db.get(account.encode()) is None:
            self._n += 1
        self._cache.pop(account, None)
        self._remember(account, entry)

    def __delitem__(self, account: str) -> None:
        in_cache = self._cache.pop(account, None) is not None
        key = account.encode()
        on_disk = self._db.get(key) is not None
        if not (in_cache or on_disk):
            raise KeyError(account)
        if on_disk:
            del self._db[key]
        self._n -= 1

    def __iter__(self) -> Iterator[str]:
        seen = set(self._cache)
        yield from list(self._cache)
        for key in self._db.keys():  # noqa: SIM118 (iterating an Rdict in raw mode fails)
            if key.decode() not in seen:
                yield key.decode()

    def __len__(self) -> int:
        return self._n

    def _remember(self, account: str, entry: Any) -> None:
        self._cache[account] = entry
        while len(self._cache) > self._size:
            old, evicted = self._cache.popitem(last=False)
            self._db[old.encode()] = self._encode(evicted)

    def close(self) -> None:
        self._db.close()


def account_entries(store: str, directory: Path, cache_size: int) -> MutableMapping[str, Any] | None:
    """The entries mapping for ``WorkerConfig.store``: None (a plain dict) for ``memory``."""
    if store == "memory":
        return None
    if store != "rocksdb":
        raise ValueError(f"unknown store {store!r}")
    from streams.tables import entry_bytes, entry_from_bytes

    return RocksEntries(directory, entry_bytes, entry_from_bytes, cache_size)
