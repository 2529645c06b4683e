"""The clip writer's thread pool (``core.writer.write_video`` ``max_workers``): 1 vs 8 workers.

Prints figures; not a test. One run:

1. Makes a few small videos (``curation_assets_tests.video_factory``), runs each through
   ``core.pipeline.process_video`` with a ``VideoSpill`` into a local work area (as the
   ``video_clips`` asset does: clip mp4s and previews wait on disk), gives each passed clip a
   random 768-d embedding (so the layout has its pickles and parquet, as with embeddings on),
   and keeps a pristine copy of the work area's spilled bytes.
2. For each target (a local folder; ``s3://`` on moto's server mode on a loopback port; the same
   moto behind a small HTTP proxy that waits ``--latency-ms`` before forwarding each request, a
   stand-in for a real S3 round trip) and each round, alternating the order of the worker counts
   round by round: restores the spilled bytes (the writer moves them out, so every write starts
   from fresh spills at the same paths), builds ``core.layout.video_files`` for a fresh output
   prefix and times ``core.writer.write_video`` per video.

moto answers in about a millisecond on loopback, far less than real S3 (~10-30 ms per request);
its request handling is Python in this process, so it competes with the writer for the CPU:
the plain-moto figures understate what threads buy against a real object store, the
latency variant shows it.

    python benchmarks/writer_workers.py
    python benchmarks/writer_workers.py --videos 2 --rounds 3 --targets s3 s3-latency

Results: one JSON line per run appended to ``benchmarks/results.jsonl`` (``--results``).
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit  # noqa: E402

TARGETS = ("local", "s3", "s3-latency")


# ---------------------------------------------------------------------------------------------
# a per-request delay in front of moto


class _DelayProxy(BaseHTTPRequestHandler):
    """Forwards each HTTP request to ``upstream`` after ``delay_s`` (one extra round trip)."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    delay_s: float = 0.0
    _local = threading.local()
    count = [0]  # requests forwarded
    count_lock = threading.Lock()

    def log_message(self, *args) -> None:  # quiet
        pass

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        return conn

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _forward(self) -> None:
        with self.count_lock:
            self.count[0] += 1
        body = self._body()
        time.sleep(self.delay_s)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def start_proxy(upstream_host: str, upstream_port: int, delay_s: float) -> ThreadingHTTPServer:
    handler = type("Handler", (_DelayProxy,), {"upstream": (upstream_host, upstream_port), "delay_s": delay_s,
                                               "_local": threading.local(), "count": [0],
                                               "count_lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------
# the layout to write


def prepare(tmp: Path, n_videos: int, seconds: float, stride: float):
    """Videos processed into the work area; returns (work area, results, pristine copy)."""
    import numpy as np

    from curation_assets.core import storage
    from curation_assets.core.options import PipelineOptions
    from curation_assets.models.video import process_video
    from curation_assets.core.work import VideoSpill, WorkArea
    from curation_assets_tests.video_factory import make_video

    inputs = tmp / "in"
    inputs.mkdir()
    work = WorkArea(str(tmp / "work"), str(tmp / "unused-out"))
    options = PipelineOptions(input_path=str(inputs), output_path=str(tmp / "unused-out"),
                              fixed_stride_split_duration=stride, fixed_stride_min_clip_length_s=0.0,
                              generate_previews=True, motion_filter="score-only")
    rng = np.random.default_rng(0)
    results = []
    for i in range(n_videos):
        path = make_video(inputs / f"v{i}.mp4", width=320, height=240, seconds=seconds, scene_cut_every=2.0)
        url = str(path)
        spill = VideoSpill(work, url, str(tmp / "unused-out"))
        result = process_video(url, path.name, lambda u=url: storage.open_input(u), options, spill=spill)
        if result.errors:
            sys.exit(f"{path.name}: {result.errors}")
        for clip in result.clips:
            if clip.passed:
                clip.embedding = rng.standard_normal(768).astype("float32")
        results.append(result)
    pristine = tmp / "pristine"
    shutil.copytree(tmp / "work", pristine)
    return work, results, pristine


def restore(work_dir: Path, pristine: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
    shutil.copytree(pristine, work_dir)


def write_all(work, results, output: str, workers: int) -> tuple[list[float], int]:
    """Writes every video to ``output`` with ``workers`` threads; wall seconds per video, files."""
    from curation_assets.core import layout, writer

    walls, n_files = [], 0
    for result in results:
        files = layout.video_files(result, output)
        n_files += sum(len(d) for d in files.files.values())
        started = time.perf_counter()
        writer.write_video(result, files, output, work, max_workers=workers)
        walls.append(time.perf_counter() - started)
    return walls, n_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=12.0, help="length of each generated video")
    ap.add_argument("--stride", type=float, default=0.5, help="fixed-stride clip length (s): clips per video")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per target; worker order alternates")
    ap.add_argument("--workers", type=int, nargs=2, default=[1, 8], metavar=("FEW", "MANY"))
    ap.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    ap.add_argument("--latency-ms", type=float, default=20.0, help="per-request delay of the s3-latency proxy")
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    os.environ.update(env)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)

    load = os.getloadavg()
    record: dict = {"benchmark": "writer_workers", "commit": git_commit(), "load_before": [round(x, 2) for x in load],
                    "videos": args.videos, "seconds": args.seconds, "stride": args.stride, "rounds": args.rounds,
                    "workers": args.workers, "latency_ms": args.latency_ms, "targets": {}}
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    proxy = None
    try:
        host, port = moto.get_host_and_port()
        endpoints = {"s3": f"http://{host}:{port}"}
        if "s3-latency" in args.targets:
            proxy = start_proxy(host, port, args.latency_ms / 1000.0)
            endpoints["s3-latency"] = f"http://127.0.0.1:{proxy.server_address[1]}"
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoints["s3"], region_name="us-east-1").create_bucket(Bucket=bucket)

        with tempfile.TemporaryDirectory(prefix="writer_workers_") as tmp_s:
            tmp = Path(tmp_s)
            t0 = time.perf_counter()
            work, results, pristine = prepare(tmp, args.videos, args.seconds, args.stride)
            print(f"prepared {len(results)} videos, {sum(len(r.clips) for r in results)} clips "
                  f"in {time.perf_counter() - t0:.1f} s (load {load[0]:.2f})")
            few, many = args.workers
            for target in args.targets:
                if target != "local":
                    os.environ["AWS_ENDPOINT_URL"] = endpoints[target]
                restore(tmp / "work", pristine)  # warm-up, untimed: imports, the filesystem's first connections
                write_all(work, results[:1], str(tmp / "out" / f"warm-{target}") if target == "local"
                          else f"s3://{bucket}/warm-{target}", many)
                walls: dict[int, list[float]] = {few: [], many: []}
                requests0 = proxy.RequestHandlerClass.count[0] if target == "s3-latency" else 0
                cpus: dict[int, float] = {few: 0.0, many: 0.0}
                n_files = 0
                for rnd in range(args.rounds):
                    for w in ((few, many) if rnd % 2 == 0 else (many, few)):
                        restore(tmp / "work", pristine)
                        prefix = f"{target}-w{w}-r{rnd}-{uuid.uuid4().hex[:6]}"
                        output = str(tmp / "out" / prefix) if target == "local" else f"s3://{bucket}/{prefix}"
                        c0 = cpu_self()
                        per_video, n_files = write_all(work, results, output, w)
                        cpus[w] += cpu_self() - c0
                        walls[w] += per_video
                        print(f"  {target:10s} round {rnd} workers {w}: {statistics.mean(per_video):.3f} s/video "
                              f"({n_files} files, load {os.getloadavg()[0]:.2f})")
                med = {w: statistics.median(v) for w, v in walls.items()}
                fig = {"files_per_video": round(n_files / len(results), 1),
                       "median_s_per_video": {str(w): round(v, 4) for w, v in med.items()},
                       "mean_s_per_video": {str(w): round(statistics.mean(v), 4) for w, v in walls.items()},
                       "cpu_s_per_video": {str(w): round(c / (args.rounds * len(results)), 4) for w, c in cpus.items()},
                       f"ratio_{few}_over_{many}": round(med[few] / med[many], 2),
                       "load_after": round(os.getloadavg()[0], 2)}
                if target == "s3-latency":
                    writes = 2 * args.rounds * len(results)
                    fig["requests_per_video"] = round((proxy.RequestHandlerClass.count[0] - requests0) / writes, 1)
                    fig["serial_latency_floor_s_per_video"] = round(fig["requests_per_video"] * args.latency_ms / 1000, 3)
                record["targets"][target] = fig
                print(f"{target}: {fig['files_per_video']} files/video; median s/video {few} workers "
                      f"{med[few]:.3f}, {many} workers {med[many]:.3f}: ratio {few}/{many} = "
                      f"x{fig[f'ratio_{few}_over_{many}']} (in-process CPU s/video {fig['cpu_s_per_video']})"
                      + (f"; {fig['requests_per_video']} requests/video" if "requests_per_video" in fig else ""))
    finally:
        if proxy is not None:
            proxy.shutdown()
        moto.stop()
    record["load_after"] = [round(x, 2) for x in os.getloadavg()]
    append_record(args.results, record)


if __name__ == "__main__":
    main()
