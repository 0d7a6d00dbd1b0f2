"""Upload and download throughput of one large image over real TLS.

Starts `tlschat serve` in its own process (its upload byte rate raised out of the way), then one
`tlschat.client.ChatClient` uploads a PNG of about `--mib` MiB (noise, so it does not compress)
and downloads it again, `--rounds` times with a different image each time (so every upload is
hashed, sniffed, decoded and stored, never deduplicated). Prints MiB/s of file bytes for each
round and the median.

    python benchmarks/upload.py
    python benchmarks/upload.py --mib 10 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import math
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from daemon_process import start_daemon
from PIL import Image

from tlschat.client import ChatClient, Trust

MIB = 1024 * 1024


def start_server(data_dir: Path, max_upload: int) -> tuple[subprocess.Popen[str], int]:
    # The per-user upload byte rate has no flag (a config key): raise it through the environment.
    return start_daemon(
        data_dir, "--max-upload", str(max_upload), env={"TLSCHAT_UPLOAD_RATE": str(1 << 40)}
    )


def noise_png(mib: float, seed: int) -> bytes:
    """An RGB PNG of random pixels, about `mib` MiB (noise barely compresses)."""
    side = int(math.sqrt(mib * MIB / 3))
    pixels = random.Random(seed).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


async def run(args: argparse.Namespace) -> None:
    images = [noise_png(args.mib, seed) for seed in range(args.rounds)]
    largest = max(len(data) for data in images)
    with tempfile.TemporaryDirectory(prefix="tlschat-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        proc, port = start_server(data_dir, largest)
        try:
            trust = Trust(cafile=data_dir / "tls" / "ca.pem", known_hosts=Path(tmp) / "known_hosts")
            client = ChatClient("localhost", port, "bench", trust=trust, request_timeout=120)
            ups: list[float] = []
            downs: list[float] = []
            async with client:
                for number, data in enumerate(images, 1):
                    size = len(data) / MIB
                    start = time.perf_counter()
                    meta = await client.upload(f"bench{number}.png", data)
                    uploaded = time.perf_counter()
                    back = await client.download(meta.id)
                    done = time.perf_counter()
                    assert (
                        hashlib.sha256(back).hexdigest()
                        == meta.sha256
                        == hashlib.sha256(data).hexdigest()
                    )
                    ups.append(size / (uploaded - start))
                    downs.append(size / (done - uploaded))
                    print(
                        f"round {number}: {size:.2f} MiB {meta.mime} {meta.width}x{meta.height}: "
                        f"upload {ups[-1]:.1f} MiB/s, download {downs[-1]:.1f} MiB/s",
                        flush=True,
                    )
            print(
                f"median of {len(images)}: upload {statistics.median(ups):.1f} MiB/s, "
                f"download {statistics.median(downs):.1f} MiB/s"
            )
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=10.0, help="image size in MiB (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="images to send (default 3)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
