"""Compare OFD readers on a folder of .ofd files: how many each opens, and how fast.

ofdkit is what Lore uses (ingest/parsing.py). easyofd is the other reader on the
package index; it pulls PyMuPDF (AGPL-3.0), so it is not one of Lore's dependencies:
measure it from a scratch environment that has both,

    python -m venv --system-site-packages /tmp/ofdeval
    /tmp/ofdeval/bin/pip install easyofd ofdkit
    /tmp/ofdeval/bin/python bench/ofd_readers.py FOLDER

FOLDER held the 54 .ofd test files of github.com/ofdrw/ofdrw (Apache-2.0) for the
figures in docs/benchmarks.md. easyofd writes scratch files into the working
directory, so the script runs it in a temporary one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path


def read_ofdkit(path: Path) -> str:
    import ofdkit

    with ofdkit.open(path) as document:
        return str(document.text())


def read_easyofd(path: Path) -> str:
    from easyofd import OFD  # type: ignore[import-not-found]

    reader = OFD()
    reader.read(str(path), fmt="path")
    pages = reader.data[0]["page_info"].values()
    return "".join(t["text"] for page in pages for t in page.get("text_list", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    files = sorted(parser.parse_args().folder.glob("*.ofd"))
    for label, read in (("ofdkit", read_ofdkit), ("easyofd", read_easyofd)):
        opened = empty = 0
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            here = os.getcwd()
            os.chdir(scratch)
            try:
                for path in files:
                    try:
                        with contextlib.redirect_stdout(io.StringIO()):
                            text = read(path.resolve())
                    except Exception:  # noqa: S112 - counting what each reader fails on
                        continue
                    opened += 1
                    empty += not text.strip()
            finally:
                os.chdir(here)
        seconds = time.perf_counter() - began
        print(f"{label}: opened {opened}/{len(files)} ({empty} without text) in {seconds:.2f} s")


if __name__ == "__main__":
    main()
