"""Install what SPICE needs, where pycocoevalcap and fastadasp.metrics.captions look for it.

1. Stanford CoreNLP 3.6.0 jars (from a zip of a few hundred MB). pycocoevalcap
   downloads them the first time SPICE runs; on a machine without internet
   that hangs or fails, so `fastadasp.metrics.captions` never lets it try and
   reports SPICE as unavailable instead.
2. On Java 15+: the standalone Nashorn JavaScript engine and its ASM jars
   (Maven Central, ~3 MB), because SPICE 1.0 writes its scores through a
   JavaScript engine that Java 15+ no longer ships.

Run it once on a machine with internet (`make spice`), or fetch the files
elsewhere, copy them over and pass `--zip` / `--jars-from`.

    python scripts/get_spice.py                 # download and install
    python scripts/get_spice.py --zip stanford-corenlp-full-2015-12-09.zip --jars-from ./jars
    python scripts/get_spice.py --dry-run       # say what would happen, change nothing
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

from fastadasp.metrics.captions import NASHORN_ARTIFACTS, java_major_version, nashorn_jars, spice_jars

CORENLP = "stanford-corenlp-full-2015-12-09"
URL = f"https://nlp.stanford.edu/software/{CORENLP}.zip"
MAVEN = "https://repo1.maven.org/maven2"


def maven_url(group: str, artifact: str, version: str) -> str:
    return f"{MAVEN}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


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


def install_file(source: Path | str, target: Path) -> None:
    """Copy a local file or download a URL to `target`, which appears only when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    if isinstance(source, Path):
        if not source.is_file():
            raise SystemExit(f"{source} not found (needed for {target.name})")
        shutil.copyfile(source, partial)
    else:
        urllib.request.urlretrieve(source, partial)
    partial.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", type=Path, help=f"a local copy of {CORENLP}.zip (no download)")
    parser.add_argument("--jars-from", type=Path, help="a folder holding the Nashorn/ASM jars (no download)")
    parser.add_argument("--url", default=URL, help="where to download the CoreNLP zip from (default: %(default)s)")
    parser.add_argument("--lib-dir", type=Path, help="install here instead of pycocoevalcap's spice/lib")
    nashorn = parser.add_mutually_exclusive_group()
    nashorn.add_argument("--nashorn", action="store_true", help="install the Nashorn jars whatever the Java")
    nashorn.add_argument("--no-nashorn", action="store_true", help="never install the Nashorn jars")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done and change nothing")
    args = parser.parse_args(argv)

    corenlp, engine = spice_jars(), nashorn_jars()
    if args.lib_dir is not None:
        corenlp = [args.lib_dir / p.name for p in corenlp]
        engine = [args.lib_dir / p.name for p in engine]
    java = java_major_version() if shutil.which("java") else None
    want_engine = args.nashorn or (not args.no_nashorn and (java is None or java >= 15))
    plan: list[tuple[Path, Path | str]] = []  # (target, source) for the engine jars
    if want_engine:
        for (group, artifact, version), target in zip(NASHORN_ARTIFACTS, engine):
            if not target.is_file():
                source = args.jars_from / target.name if args.jars_from else maven_url(group, artifact, version)
                plan.append((target, source))
    missing_corenlp = [t for t in corenlp if not t.is_file()]
    if not missing_corenlp and not plan:
        print("SPICE's jars are already installed in " + str(corenlp[0].parent))
        return 0
    source = str(args.zip) if args.zip else args.url
    if args.dry_run:
        lines = [f"{t}  <-  {source}" for t in missing_corenlp] + [f"{t}  <-  {s}" for t, s in plan]
        print(f"java major version: {java}; would install:\n  " + "\n  ".join(lines))
        return 0
    socket.setdefaulttimeout(120)  # a dead connection fails instead of hanging
    if missing_corenlp and args.zip:
        install_from_zip(args.zip, missing_corenlp)
    elif missing_corenlp:
        with tempfile.TemporaryDirectory() as tmp:
            zip_path = Path(tmp) / f"{CORENLP}.zip"
            print(f"downloading {args.url} (a few hundred MB) ...", flush=True)
            urllib.request.urlretrieve(args.url, zip_path)
            install_from_zip(zip_path, missing_corenlp)
    for target, src in plan:
        install_file(src, target)
    print("installed:\n  " + "\n  ".join(str(t) for t in missing_corenlp + [t for t, _ in plan]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
