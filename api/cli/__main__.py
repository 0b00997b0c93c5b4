"""`python -m api.cli`, as the `lore` command (the tests and benchmarks start it so)."""

from api.cli import main

main()
