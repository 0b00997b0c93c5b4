"""Turning files into chunks in Lore's stores. Builds on `rag`; imports nothing above it."""
