"""Stage-two presets and sweep definitions, shipped as TOML files."""
