"""Caption/preview windows over a clip's native frames (spec: "Windows")."""

from __future__ import annotations

WINDOW_SIZE = 256
MIN_REMAINDER = 128
MIN_FRAMES = 4


def compute_windows(num_frames: int, size: int = WINDOW_SIZE,
                    min_remainder: int = MIN_REMAINDER) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` frame windows for a clip of ``num_frames`` decoded frames.

    Fewer than 4 frames give no window; up to ``size`` frames one window; longer clips get
    consecutive ``size``-frame windows, the remainder being its own window when it has at least
    ``min_remainder`` frames and otherwise extending the last one.
    """
    if num_frames < MIN_FRAMES:
        return []
    if num_frames <= size:
        return [(0, num_frames - 1)]
    full, remainder = divmod(num_frames, size)
    windows = [(i * size, i * size + size - 1) for i in range(full)]
    if remainder >= min_remainder:
        windows.append((full * size, num_frames - 1))
    elif remainder:
        windows[-1] = (windows[-1][0], num_frames - 1)
    return windows

