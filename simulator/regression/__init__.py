"""The guideline maintainers' tools: the invariant oracle (checks that share no code with the engine's
decisions), static lint, golden snapshots and diffs. Never imports teaching or cli.
"""
