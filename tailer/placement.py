"""After a reshard: make sure every aggregated sub-record has a copy on a shard that owns its key.

With per-line keys, the packer groups lines by the shard its map predicts
(:mod:`tailer.shardmap`). After a SplitShard or MergeShards the map is stale
until refreshed, and an aggregate sent under its first line's key may land on
a child shard that owns only some of its lines' keys; a KCL consumer drops the
others. As the KPL does, each result's ShardId is compared with the
prediction; on a mismatch the map is refreshed and the sub-records that landed
on a shard that does not own their key are packed again by their owning shard
and sent again, before the batch counts as delivered. (A KCL consumer then
reads each line once from a shard that owns it; the copies it drops do no harm.)
If the map cannot be refreshed (ListShards failing or denied), every line of the
aggregate is sent again aggregated per key, which is right whatever the shards.

Thread-safe: runs in the delivery threads.
"""

from __future__ import annotations

from .errors import Unavailable
from .kpl import Aggregate, deaggregate
from .shardmap import ShardMap
from .sink import Record

__all__ = ["PlacementCheck"]


class PlacementCheck:
    def __init__(self, shard_map: ShardMap, max_bytes: int) -> None:
        self._map = shard_map
        self._max_bytes = max_bytes

    def misplaced(self, record: Record, landed: str) -> list[tuple[Record, str | None]]:
        """Records (with their predicted shard) to send again for ``record``'s sub-records that
        ``landed`` does not own. Raises ShipError while the shard map cannot tell."""
        self._map.refresh_after_mismatch()
        if self._map.owns(landed, "") is None:
            raise Unavailable(f"the shard map does not know shard {landed} yet", code="ShardMapStale")
        by_slot: dict[str, list[tuple[str, bytes]]] = {}
        for key, data in deaggregate(record[0]):
            if not self._map.owns(landed, key):
                shard = self._map.shard_for(key)
                by_slot.setdefault(shard or "key:" + key, []).append((key, data))
        return self._pack(by_slot)

    def per_key(self, record: Record) -> list[tuple[Record, str | None]]:
        """Without a shard map: every sub-record again, aggregated per key — right whatever the shards
        (the copies already on an owning shard become duplicates)."""
        by_slot: dict[str, list[tuple[str, bytes]]] = {}
        for key, data in deaggregate(record[0]):
            by_slot.setdefault("key:" + key, []).append((key, data))
        return self._pack(by_slot)

    def _pack(self, by_slot: dict[str, list[tuple[str, bytes]]]) -> list[tuple[Record, str | None]]:
        out: list[tuple[Record, str | None]] = []
        for slot, items in by_slot.items():
            predicted = None if slot.startswith("key:") else slot
            aggregate = Aggregate(self._max_bytes)
            for key, data in items:
                if not aggregate.add(data, key):
                    out.append((_record_of(aggregate), predicted))
                    aggregate = Aggregate(self._max_bytes)
                    aggregate.add(data, key)
            out.append((_record_of(aggregate), predicted))
        return out


def _record_of(aggregate: Aggregate) -> Record:
    return aggregate.to_bytes(), aggregate.first_key, None
