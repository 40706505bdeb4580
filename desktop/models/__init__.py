"""Table models: Docker JSON rows keyed by id, updated incrementally."""
