"""libx264 without its AVX-512 functions, so a clip's bytes depend on its frames alone.

On a CPU with AVX-512, libx264 (core 165, the one PyAV's wheels bundle) uses AVX-512 code in
the macroblock-tree rate control (preset medium's ``mbtree``) that works past the end of each row
of lowres macroblocks when the row is not a multiple of 8 of them (a frame width that is not a
multiple of 128 px, such as 320): it reads motion vectors, costs and propagate amounts beyond
the row, past the end of x264's buffers in the last row, and adds what it computes from them
into the reference frames' costs. What it reads there is heap memory x264 never wrote, so the
same frames encode to different bytes depending on what the process allocated before (another
thread, such as the model-frame tap converting frames, is enough). Found by filling new heap
memory with glibc's ``MALLOC_PERTURB_``: encodes 320, 352, 448 and 576 px wide change with the
fill; 256, 384, 512 and 640 px wide ones do not, and none does with ``mbtree=0`` or without
AVX-512 (``test_x264_cpu.py`` fails without this module).

Without AVX-512 x264 takes its AVX2 functions, which work row by row exactly; its SIMD levels
agree with each other (x264's checkasm), and for widths a multiple of 128 px the clips are byte
for byte those of an AVX-512 run (tested). :func:`x264_options` hands libx264 the CPU flags it
detects itself, less AVX-512 (x264's ``asm`` parameter takes them as a number); CPUs without
AVX-512 keep x264's own choice.

Plain Python (ctypes on the libx264 PyAV has loaded); no dagster.
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache

log = logging.getLogger(__name__)

__all__ = ["X264_CPU_AVX512", "x264_cpu_mask", "x264_options"]

# x264.h: "AVX-512 {F, CD, BW, DQ, VL}, requires OS support"
X264_CPU_AVX512 = 1 << 16


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
        log.warning("cannot ask %s for its CPU flags (%s): clips whose width is not a "
                    "multiple of 128 px may encode to different bytes from run to run", path, exc)
        return None
    if not detected & X264_CPU_AVX512:
        return None
    return detected & ~X264_CPU_AVX512


def x264_options() -> dict[str, str]:
    """Encoder options for libx264 (merged into the stream's options): its CPU flags without
    AVX-512 where it would use them, nothing elsewhere."""
    mask = x264_cpu_mask()
    return {} if mask is None else {"x264-params": f"asm={mask}"}
