"""The store's rules, once: every `JobStore` operation decided over plain rows.

* `rows`: the port an adapter supplies (transactions, loads, candidate queries, grouped
  counts, one conditional batch write);
* `plans`: each operation that changes something, inside one transaction;
* `reads`: each answer folded from rows and grouped counts;
* `engine`: `StoreEngine`, the `JobStore` over an adapter's rows.
"""

from taskyard.domain.store import plans, reads
from taskyard.domain.store.engine import StoreEngine
from taskyard.domain.store.rows import Changes, JobWrite, Rows, RowStore

__all__ = ["Changes", "JobWrite", "RowStore", "Rows", "StoreEngine", "plans", "reads"]
