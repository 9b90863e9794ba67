"""An app whose ``rpc`` module fails to import: startup must fail on it, not skip it."""
