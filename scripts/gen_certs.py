"""Make a CA and a server certificate for a real deployment (same as `tlschat gen-certs`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlschat.certs import CertError, write_deployment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gen_certs.py", description="Make a CA and a server certificate for tlschat."
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        required=True,
        help="host name or IP address of the server (repeatable)",
    )
    parser.add_argument("--days", type=int, default=825, help="server certificate lifetime (825)")
    args = parser.parse_args(argv)
    try:
        files = write_deployment(args.out, args.names, days=args.days)
    except CertError as exc:
        print(f"gen_certs.py: {exc}", file=sys.stderr)
        return 2
    for label, value in files.describe():
        print(f"{label}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
