"""What one upload-watcher tick costs over 100,000 videos, on local disk and on the S3 server.

Prints figures; not a test. Every tick runs in a fresh child process (as the sensor daemon's
tick does in its own code server), which reports its wall time, CPU seconds and peak RSS (and
its RSS right after the imports, so what the tick itself adds can be read off). Per backend:

``first``     the first tick over N existing, old videos (all requested: cap raised to N);
``idle``      a tick with nothing new (the case that repeats every minute);
``new100``    100 new videos copied in: the tick that sees them (they settle) and the next one
              that requests them;
``baseline``  in the same run, what the sensor did before: ``sources.list_videos`` (fsspec
              ``find``) and a set difference against the N known keys, ratio printed.

On S3 (moto's server in this process, filled through its backend; the children list it over
HTTP like any client), also the idle tick with one listing request at a time (``c1``) and with a
page budget of ``--budget`` pages (``budget``). The cursor's size is printed for the table in a
state store (what the sensor stores) and inline (no store). Moto's own cost per listing page
grows with the bucket (it filters and sorts every key on each request): the time of one
page at N keys is printed next to the tick, so its share of the wall time can be read.

    python benchmarks/sensor_scale.py                 # 100,000 files, local and S3
    python benchmarks/sensor_scale.py --files 20000 --skip-s3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402

PER_FOLDER = 1000


def content(i: int) -> bytes:
    """A few bytes that differ per video (distinct sizes and ETags)."""
    return f"video {i}".encode() * (1 + i % 13)


def rel_name(i: int) -> str:
    return f"camera_{i // PER_FOLDER:03d}/2026-11-{1 + i % 28:02d}_clip_{i:07d}.mp4"


# --------------------------------------------------------------------------------------------
# the child: one tick
# --------------------------------------------------------------------------------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from curation_assets.core import sources
    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.core.upload_state import FolderStateStore, encode_state, load_cursor, save_cursor
    from curation_assets.core.uploads import WatchSettings, watch_tick

    rss0 = own_peak_rss_mb()
    cpu0 = cpu_self()
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if spec["mode"] == "baseline":
        known = {key_from_rel_path(rel_name(i)) for i in range(spec["known"])}
        t0 = time.perf_counter()
        found = [key_from_rel_path(r) for r in sources.list_videos(spec["url"])]
        out["new"] = len([k for k in found if k not in known])
        out["listed"] = len(found)
    else:
        cursor_path = Path(spec["cursor_file"])
        cursor = cursor_path.read_text() if cursor_path.exists() else None
        store = FolderStateStore(spec["store"])
        settings = WatchSettings(**spec.get("settings", {}))
        t = watch_tick(spec["url"], cursor, settings, store=store, store_key="bench", now=spec.get("now"))
        out.update(requested=len(t.requested), settling=len(t.settling), carried=t.carried,
                   deleted=len(t.deleted), listed=t.listed, list_requests=t.list_requests,
                   cursor_chars=len(t.cursor), reset=t.reset)
        if spec.get("commit", True):
            cursor_path.write_text(t.cursor)
        if spec.get("sizes"):
            digest = t.cursor.split(";")[1][2:]
            state, _ = load_cursor(t.cursor, digest, store=store, store_key="bench")
            blob = encode_state(state.rows)
            out["blob_bytes"] = len(blob)
            inline, _ = save_cursor(state, digest, previous_slot=None, store=None, store_key="bench")
            out["inline_cursor_chars"] = len(inline)
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    out["cpu_s"] = round(cpu_self() - cpu0, 3)
    out["rss_after_imports_mb"] = round(rss0, 1)
    out["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
    return out


def own_peak_rss_mb() -> float:
    """This process's own high-water RSS (``VmHWM``). ``ru_maxrss`` is not usable in a child:
    Linux carries the parent's value over fork and exec, and the parent holds the S3 server."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return peak_rss_mb()


def run_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def show(backend: str, label: str, r: dict[str, Any]) -> None:
    extra = "".join(f", {k} {r[k]}" for k in ("requested", "settling", "carried", "list_requests", "cursor_chars")
                    if k in r)
    print(f"  {backend:5s} {label:10s} wall {r['wall_s']:7.2f} s  CPU {r['cpu_s']:6.2f} s  peak RSS "
          f"{r['peak_rss_mb']:6.1f} MB (after imports {r['rss_after_imports_mb']:.1f}){extra}", flush=True)


# --------------------------------------------------------------------------------------------
# the scenarios
# --------------------------------------------------------------------------------------------


def scenario(backend: str, url: str, n: int, add_new, work: Path, env: dict[str, str], extra: dict | None = None
             ) -> dict[str, Any]:
    cursor_file = work / f"{backend}.cursor"
    store = str(work / f"{backend}-state")
    base = {"url": url, "cursor_file": str(cursor_file), "store": store, "mode": "watch"}
    res: dict[str, Any] = {}
    res["first"] = run_child({**base, "settings": {"max_per_tick": n, "settle_age_s": 0}}, env)
    show(backend, "first", res["first"])
    res["idle"] = run_child({**base, "sizes": True}, env)
    show(backend, "idle", res["idle"])
    for label, spec in (extra or {}).items():
        res[label] = run_child({**base, **spec, "commit": False}, env)
        show(backend, label, res[label])
    add_new(100)
    res["new100_seen"] = run_child(base, env)
    show(backend, "new seen", res["new100_seen"])
    res["new100_requested"] = run_child({**base, "now": time.time() + 3600}, env)
    show(backend, "new req.", res["new100_requested"])
    res["baseline"] = run_child({"url": url, "mode": "baseline", "known": n}, env)
    show(backend, "baseline", res["baseline"])
    ratio = res["idle"]["wall_s"] / max(res["baseline"]["wall_s"], 1e-9)
    res["idle_vs_baseline_wall"] = round(ratio, 3)
    print(f"  {backend}: idle tick / baseline listing (wall) = {ratio:.3f}; cursor {res['idle']['cursor_chars']} "
          f"chars with the state store, {res['idle']['inline_cursor_chars']} inline; table "
          f"{res['idle']['blob_bytes']} bytes ({res['idle']['blob_bytes'] / n:.1f} per video)", flush=True)
    return res


def local_part(n: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    root = work / "local-in"
    t0 = time.perf_counter()
    old = time.time() - 86400
    for i in range(n):
        p = root / rel_name(i)
        if i % PER_FOLDER == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content(i))
        os.utime(p, (old - i * 7.3, old - i * 7.3))  # sizes and mtimes differ, as real uploads' do
    for j in range(n // 10):  # other files that share the folders (thumbnails, sidecars)
        (root / rel_name(j * 10)).with_suffix(".json").write_bytes(b"{}")
    print(f"local: {n} videos and {n // 10} other files made in {time.perf_counter() - t0:.1f} s", flush=True)

    def add_new(k: int) -> None:
        for i in range(n, n + k):
            p = root / rel_name(i)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content(i))

    return scenario("local", str(root), n, add_new, work, env)


def s3_part(n: int, work: Path, env: dict[str, str], budget: int) -> dict[str, Any]:
    import logging

    from moto.backends import get_backend
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = dict(env, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_EC2_METADATA_DISABLED="true")
        import boto3

        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket="bench-videos")
        backend = get_backend("s3")["123456789012"]["global"]
        t0 = time.perf_counter()
        for i in range(n):
            backend.put_object("bench-videos", f"in/{rel_name(i)}", content(i))
        print(f"s3: {n} objects put through moto's backend in {time.perf_counter() - t0:.1f} s", flush=True)
        pages = []
        for _ in range(3):
            t0 = time.perf_counter()
            client.list_objects_v2(Bucket="bench-videos", Prefix="in/", MaxKeys=1000)
            pages.append(time.perf_counter() - t0)
        page_s = sorted(pages)[1]
        print(f"s3: one listing page of 1000 keys at {n} keys in the bucket: {page_s:.3f} s (moto, median of 3)",
              flush=True)

        def add_new(k: int) -> None:
            for i in range(n, n + k):
                client.put_object(Bucket="bench-videos", Key=f"in/{rel_name(i)}", Body=content(i))

        extra = {"c1": {"settings": {"list_concurrency": 1}},
                 "budget": {"settings": {"list_pages_per_tick": budget}}}
        res = scenario("s3", "s3://bench-videos/in", n, add_new, work, env, extra)
        res["moto_page_s"] = round(page_s, 3)
        return res
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--budget", type=int, default=3, help="pages per tick for the S3 page-budget tick")
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    work = Path(tempfile.mkdtemp(prefix="sensor_scale_"))
    record: dict[str, Any] = {"benchmark": "sensor_scale", "commit": git_commit(), "time": time.time(),
                              "files": args.files, "cpus": os.cpu_count(), "load_at_start": list(os.getloadavg())}
    try:
        if not args.skip_local:
            record["local"] = local_part(args.files, work, env)
        if not args.skip_s3:
            record["s3"] = s3_part(args.files, work, env, args.budget)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["load_at_end"] = list(os.getloadavg())
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
