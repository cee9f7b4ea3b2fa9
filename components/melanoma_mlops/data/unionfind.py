"""Disjoint sets, the one way rows are merged into groups (sources, duplicate clusters, split units)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class UnionFind:
    """Disjoint sets over ``0..n-1`` (path halving + union by size); used to merge groups."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def union_by_key(self, keys: Sequence[str]) -> None:
        """Connect all positions sharing a non-empty key."""
        first: dict[str, int] = {}
        for pos, key in enumerate(keys):
            if key == "":
                continue
            if key in first:
                self.union(first[key], pos)
            else:
                first[key] = pos

    def union_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        for a, b in pairs:
            self.union(int(a), int(b))

    def components(self) -> np.ndarray:
        """Component number per position, numbered by first appearance (deterministic)."""
        ids: dict[int, int] = {}
        out = np.empty(len(self.parent), dtype=np.int64)
        for pos in range(len(self.parent)):
            out[pos] = ids.setdefault(self.find(pos), len(ids))
        return out
