"""The capture contract on disk: records (capture files, seq, reading them back), policy (which calls,
which headers, redaction) and the key registry (per-turn keys → attribution)."""
