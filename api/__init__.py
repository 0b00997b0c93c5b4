"""Lore's interfaces: the HTTP API and the `lore` command line."""
