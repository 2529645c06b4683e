"""libx264's AVX-512 functions only where they are exact, so a clip's bytes depend on its frames
alone.

On a CPU with AVX-512, libx264 (core 165, the one PyAV's wheels bundle) uses AVX-512 code in
the macroblock-tree rate control (preset medium's ``mbtree``) that works past the end of each row
of lowres macroblocks when the row is not a multiple of 8 of them (a frame width of 320 px, 20
macroblocks, say): it reads motion vectors, costs and propagate amounts beyond the row, past the
end of x264's buffers in the last row, and adds what it computes from them into the reference
frames' costs. What it reads there is heap memory x264 never wrote, so the same frames encode to
different bytes depending on what the process allocated before (another thread, such as the
model-frame tap converting frames, is enough). Found by filling new heap memory with glibc's
``MALLOC_PERTURB_``: encodes 320, 352, 368, 400, 448, 528 and 576 px wide change with the fill;
256, 384, 512, 640, 896, 1152 and 1270 px wide ones (16 to 80 macroblocks) do not, and none does
with ``mbtree=0`` or without AVX-512 (``test_x264_cpu.py``).

By default (``transcode_x264_avx512`` off) libx264 gets the CPU flags it detects itself, less
AVX-512 (x264's ``asm`` parameter takes them as a number): it takes its AVX2 functions, which
work row by row exactly, on every CPU, so a clip's bytes do not depend on whether the machine
has AVX-512. With the setting on, a clip whose macroblock row is a multiple of 8 (1280, 1920,
3840 px wide ...) keeps x264's own choice, AVX-512 included: about 7% less encode CPU on the
race's 720p footage (docs/performance.md), deterministic, but not the AVX2 bytes: x264's AVX-512
macroblock-tree cost divides exactly (``vdivps``) where its AVX2 code approximates the reciprocal
(``rcpps`` and a Newton step), so some clips differ from those of a CPU without AVX-512, as
ffmpeg's own do. Other widths keep the mask either way. CPUs without AVX-512 keep x264's own
choice.

Plain Python (ctypes on the libx264 PyAV has loaded); no dagster.
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache

log = logging.getLogger(__name__)

__all__ = ["AVX512_ROW_MULTIPLE", "X264_CPU_AVX512", "avx512_exact", "x264_cpu_mask", "x264_options"]

# x264.h: "AVX-512 {F, CD, BW, DQ, VL}, requires OS support"
X264_CPU_AVX512 = 1 << 16
# Macroblocks per row that libx264's AVX-512 macroblock-tree code handles without reading past it.
AVX512_ROW_MULTIPLE = 8
MACROBLOCK_PX = 16


def _loaded_libx264() -> str | None:
    """The path of the libx264 mapped into this process (libavcodec's, once PyAV is imported)."""
    import av  # noqa: F401  (loads libavcodec, and with it libx264)

    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith("libx264") and ".so" in name:
                    return path
    except OSError:  # not Linux: no /proc
        return None
    return None


@lru_cache(maxsize=1)
def x264_cpu_mask() -> int | None:
    """The CPU flags libx264 detects here, less AVX-512; None when AVX-512 is not among them or
    libx264 cannot be asked (then x264 picks its functions itself)."""
    path = _loaded_libx264()
    if path is None:
        log.debug("libx264 not found among the loaded libraries: its CPU flags are left as they are")
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.x264_cpu_detect.restype = ctypes.c_uint32
        lib.x264_cpu_detect.argtypes = []
        detected = int(lib.x264_cpu_detect())
    except (OSError, AttributeError) as exc:
        log.warning("cannot ask %s for its CPU flags (%s): clips whose macroblock row is not a "
                    "multiple of 8 (320 px wide, say) may encode to different bytes from run to run", path, exc)
        return None
    if not detected & X264_CPU_AVX512:
        return None
    return detected & ~X264_CPU_AVX512


def macroblocks_per_row(width: int) -> int:
    """x264's macroblocks across a frame ``width`` px wide (it pads the width to whole macroblocks)."""
    return -(-width // MACROBLOCK_PX)


def avx512_exact(width: int) -> bool:
    """Whether libx264's AVX-512 code stays within a row of frames ``width`` px wide: its
    macroblocks per row are a multiple of 8."""
    return macroblocks_per_row(width) % AVX512_ROW_MULTIPLE == 0


def x264_options(width: int, *, avx512: bool = False) -> dict[str, str]:
    """Encoder options for libx264 (merged into the stream's options) for frames ``width`` px
    wide: its CPU flags without AVX-512 where it would use them, unless ``avx512`` asks for them
    and the width is one :func:`avx512_exact` allows; nothing elsewhere."""
    mask = x264_cpu_mask()
    if avx512:
        _say_what_avx512_does(mask is not None, width)
    if mask is None or (avx512 and avx512_exact(width)):
        return {}
    return {"x264-params": f"asm={mask}"}


@lru_cache(maxsize=64)
def _say_what_avx512_does(cpu_has_it: bool, width: int) -> None:
    """Once per width: where ``transcode_x264_avx512`` changes nothing, and why (a --verbose run shows it)."""
    if not cpu_has_it:
        log.info("transcode_x264_avx512: libx264 finds no AVX-512 on this CPU (or cannot be asked): "
                 "clips are encoded as without the setting")
    elif not avx512_exact(width):
        log.info("transcode_x264_avx512: %d px wide clips (%d macroblocks a row, not a multiple of %d) are "
                 "encoded without AVX-512, whose code would read past the row", width,
                 macroblocks_per_row(width), AVX512_ROW_MULTIPLE)
