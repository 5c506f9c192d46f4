"""Per-client rate limits (SPEC §6.5): where the counts live, and the limiter that asks them.

`pipeline/rate_limits.py` decides (which rules, which keys, GCRA, the headers); this package
holds the counts: in each process (`memory`) or in Redis, shared by every worker and replica
(`redis_store`), behind one `Store` protocol. `limiter` applies a route's rules through the
store and the configured answer to a store that fails.
"""
