"""Sharded, idempotent jobs: which rows shard ``i`` of ``N`` owns, and which shards are done.

A job given ``shard=i num_shards=N`` processes one contiguous, balanced slice of its input
(:func:`shard_slice`), writes its own outputs, and records a marker when it finishes;
a job whose marker exists is skipped, so a re-submitted array only redoes what failed.
A reduce step (:func:`require_all_done`) refuses to merge until every shard has finished
and names the missing ones. Markers live in a folder named by a fingerprint of the job's
inputs and settings, so a changed job never reuses another job's markers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurestore.io import write_json_atomic


def shard_slice(n_rows: int, shard: int, num_shards: int) -> tuple[int, int]:
    """``(offset, length)`` of shard ``shard``'s rows among ``n_rows``: contiguous, sizes differ by at most 1."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards - 1}], got {shard}")
    base, extra = divmod(n_rows, num_shards)
    offset = shard * base + min(shard, extra)
    return offset, base + (shard < extra)


def job_fingerprint(settings: Mapping[str, Any]) -> str:
    """A short stable id of a job's inputs and settings (JSON-able mapping)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardMarkers:
    """Done-markers of one sharded job: ``<folder>/<i>-of-<N>.json``."""

    folder: Path
    num_shards: int

    @classmethod
    def for_job(cls, root: str | Path, job: str, settings: Mapping[str, Any], num_shards: int) -> ShardMarkers:
        """Markers under ``<root>/shards/<job>-<fingerprint of settings and N>``."""
        fingerprint = job_fingerprint({**settings, "num_shards": num_shards})
        return cls(Path(root) / "shards" / f"{job}-{fingerprint}", num_shards)

    def path(self, shard: int) -> Path:
        return self.folder / f"{shard}-of-{self.num_shards}.json"

    def is_done(self, shard: int) -> bool:
        return self.path(shard).is_file()

    def mark_done(self, shard: int, info: Mapping[str, Any]) -> Path:
        """Record that ``shard`` finished (atomically, with what it did)."""
        shard_slice(0, shard, self.num_shards)  # validates the index
        return write_json_atomic(self.path(shard), {"shard": shard, "num_shards": self.num_shards, **info})

    def missing(self) -> list[int]:
        return [shard for shard in range(self.num_shards) if not self.is_done(shard)]

    def require_all_done(self) -> list[dict[str, Any]]:
        """Every shard's marker content, or an error naming the shards that have not finished."""
        missing = self.missing()
        if missing:
            raise RuntimeError(
                f"{len(missing)} of {self.num_shards} shards have not finished ({self.folder}): missing shard "
                f"{', '.join(map(str, missing[:20]))}{' ...' if len(missing) > 20 else ''}; run them before the reduce step"
            )
        return [json.loads(self.path(shard).read_text()) for shard in range(self.num_shards)]
