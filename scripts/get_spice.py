"""Install the Stanford CoreNLP 3.6.0 jars that SPICE needs, where pycocoevalcap looks for them.

pycocoevalcap downloads these jars (from a zip of a few hundred MB) the first time SPICE
runs; on a machine without internet that hangs or fails, so
`fastadasp.metrics.captions` reports SPICE as unavailable instead. Run this
once on a machine with internet (`make spice`), or download the zip
elsewhere, copy it over and pass `--zip`.

    python scripts/get_spice.py             # download and install
    python scripts/get_spice.py --zip stanford-corenlp-full-2015-12-09.zip
    python scripts/get_spice.py --dry-run   # say what would happen, change nothing
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from fastadasp.metrics.captions import spice_jars

CORENLP = "stanford-corenlp-full-2015-12-09"
URL = f"https://nlp.stanford.edu/software/{CORENLP}.zip"


def install_from_zip(zip_path: Path, targets: list[Path]) -> None:
    """Copy the jars named like `targets` out of the CoreNLP zip; each appears only when complete."""
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        for target in targets:
            member = f"{CORENLP}/{target.name}"
            if member not in names:
                raise SystemExit(f"{zip_path} has no {member}; is it {CORENLP}.zip?")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with archive.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", type=Path, help=f"a local copy of {CORENLP}.zip (no download)")
    parser.add_argument("--url", default=URL, help="where to download the zip from (default: %(default)s)")
    parser.add_argument("--lib-dir", type=Path, help="install here instead of pycocoevalcap's spice/lib")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done and change nothing")
    args = parser.parse_args(argv)

    targets = spice_jars()
    if args.lib_dir is not None:
        targets = [args.lib_dir / t.name for t in targets]
    missing = [t for t in targets if not t.is_file()]
    if not missing:
        print("SPICE jars already installed:\n  " + "\n  ".join(map(str, targets)))
        return 0
    source = str(args.zip) if args.zip else args.url
    if args.dry_run:
        print(f"would install from {source}:\n  " + "\n  ".join(map(str, missing)))
        return 0
    if args.zip:
        install_from_zip(args.zip, missing)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            zip_path = Path(tmp) / f"{CORENLP}.zip"
            print(f"downloading {args.url} (a few hundred MB) ...", flush=True)
            socket.setdefaulttimeout(120)  # a dead connection fails instead of hanging
            urllib.request.urlretrieve(args.url, zip_path)
            install_from_zip(zip_path, missing)
    print("installed:\n  " + "\n  ".join(map(str, missing)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
