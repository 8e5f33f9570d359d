"""Shipped sweeps: one TOML file per paper table, rows of settings applied over the preset."""
