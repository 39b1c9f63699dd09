"""The pixels of the synthetic scenes: shape masks, the tight box of a mask and background textures.

NumPy alone: a shape is a union of convex polygons (or a disk) inside the unit circle, tested at pixel centres;
trigonometry comes from a table of whole degrees rounded to 2**-20, so that a libm's last-bit differences never
reach a pixel and one seed draws bit-identical scenes on every machine.
"""

from __future__ import annotations

import numpy as np

_QUANTUM = 2.0**-20  # trigonometry is rounded to this step, so a libm's last-bit differences do not reach pixels


def _quantise(values) -> np.ndarray:
    """`values` as float64 rounded to multiples of `_QUANTUM`."""
    return np.round(np.asarray(values, dtype=np.float64) / _QUANTUM) * _QUANTUM


# cos and sin of every whole degree, rows (cos, sin).
_COS_SIN = _quantise([np.cos(np.deg2rad(np.arange(360))), np.sin(np.deg2rad(np.arange(360)))])


def _unit_polygon(degrees) -> np.ndarray:
    """Vertices (k, 2) as (x, y), y pointing down, on the unit circle at `degrees`."""
    return _COS_SIN[:, np.asarray(degrees) % 360].T


def _half_planes(vertices) -> np.ndarray:
    """A convex polygon as rows (nx, ny, d): a point p is inside when n . p <= d for every row."""
    rows = []
    centroid = np.mean(vertices, axis=0)
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        normal = np.array([b[1] - a[1], a[0] - b[0]])
        if normal @ centroid > normal @ a:
            normal = -normal
        rows.append([*normal, normal @ a])
    return _quantise(rows)


_HALF, _ARM = 0.31, 0.95  # the cross's half bar width and arm length: its outer corners just inside the unit circle

# Each shape as convex parts inside the unit circle (None: a disk), a part as its half-planes.
SHAPES = {
    "circle": None,
    "square": [_half_planes(_unit_polygon([45, 135, 225, 315]))],
    "triangle": [_half_planes(_unit_polygon([270, 30, 150]))],
    "cross": [
        _half_planes(np.array([[-_ARM, -_HALF], [_ARM, -_HALF], [_ARM, _HALF], [-_ARM, _HALF]])),
        _half_planes(np.array([[-_HALF, -_ARM], [_HALF, -_ARM], [_HALF, _ARM], [-_HALF, _ARM]])),
    ],
}


# Each shape's outline corners in its unrotated unit frame, (x, y) with y down: the vertices of the polygons above
# (the cross's twelve: eight at its arm ends, four where the arms meet); a circle has none.
SHAPE_CORNERS = {
    "circle": np.zeros((0, 2)),
    "square": _unit_polygon([45, 135, 225, 315]),
    "triangle": _unit_polygon([270, 30, 150]),
    "cross": np.array(
        [
            [_ARM, -_HALF], [_ARM, _HALF], [_HALF, _HALF], [_HALF, _ARM], [-_HALF, _ARM], [-_HALF, _HALF],
            [-_ARM, _HALF], [-_ARM, -_HALF], [-_HALF, -_HALF], [-_HALF, -_ARM], [_HALF, -_ARM], [_HALF, -_HALF],
        ]
    ),
}  # fmt: skip


def cos_sin(degrees) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and sine of whole `degrees` from the quantised table, so that drawings made with them are
    bit-identical on every machine."""
    table = _COS_SIN[:, np.asarray(degrees, dtype=np.int64) % 360]
    return table[0], table[1]


def shape_corners(name: str, *, centre, radius: float, degrees: int) -> np.ndarray:
    """The outline corners (k, 2) of a shape drawn by `shape_mask` with the same arguments, as (x, y) in pixels
    (the continuous coordinates in which pixel (i, j) has its centre at (j + 0.5, i + 0.5))."""
    cos, sin = cos_sin(degrees)
    corners = SHAPE_CORNERS[name] * radius
    u, v = corners[:, 0], corners[:, 1]
    # shape_mask maps an image offset (dx, dy) to the shape frame by (u, v) = R(-degrees) (dx, dy); invert it.
    return np.stack([centre[0] + cos * u - sin * v, centre[1] + sin * u + cos * v], axis=-1)


def shape_mask(name: str, *, centre, radius: float, degrees: int, image_size) -> tuple[tuple[slice, slice], np.ndarray]:
    """A shape's pixels as (window, inside): `window` the (rows, columns) slices of the image around it, `inside`
    a boolean mask of the window; pixel (i, j) is in when its centre (j + 0.5, i + 0.5) is inside the shape.

    Args:
        name: a key of `SHAPES`.
        centre: (x, y) of the shape's centre in pixels.
        radius: radius of the circle the shape is inscribed in, in pixels.
        degrees: rotation, a whole number of degrees.
        image_size: (height, width) of the image.
    """
    height, width = image_size
    cx, cy = centre
    x0, x1 = max(int(np.floor(cx - radius)), 0), min(int(np.ceil(cx + radius)) + 1, width)
    y0, y1 = max(int(np.floor(cy - radius)), 0), min(int(np.ceil(cy + radius)) + 1, height)
    window = (slice(y0, max(y1, y0)), slice(x0, max(x1, x0)))
    if x0 >= x1 or y0 >= y1:
        return window, np.zeros((0, 0), bool)
    dx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    parts = SHAPES[name]
    if parts is None:
        inside = dx * dx + dy * dy < radius * radius
    else:
        cos, sin = _COS_SIN[:, degrees]
        u, v = cos * dx + sin * dy, cos * dy - sin * dx  # the pixel centres in the unrotated shape's frame
        inside = np.zeros((y1 - y0, x1 - x0), bool)
        for planes in parts:
            part = np.ones_like(inside)
            for nx, ny, d in planes:
                part &= nx * u + ny * v <= d * radius
            inside |= part
    return window, inside


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel box (x1, y1, x2, y2) of a non-empty mask, x2 and y2 one past the last column and row."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def pattern(rng: np.random.Generator, *, shape, kind: int) -> np.ndarray:
    """A float32 texture in [0, 1] of `shape` (h, w): smooth noise (kind 0), stripes (1) or a gradient (2)."""
    height, width = shape
    if kind == 0:
        cells = int(rng.integers(2, 9))
        return _upsample(rng.random((cells + 1, cells + 1), dtype=np.float32), shape)
    cos, sin = _COS_SIN[:, int(rng.integers(360))].astype(np.float32)
    along = cos * np.arange(width, dtype=np.float32)[None, :] + sin * np.arange(height, dtype=np.float32)[:, None]
    if kind == 1:
        period = np.float32(rng.uniform(4.0, 12.0))
        return np.abs((along / period) % np.float32(1.0) * np.float32(2.0) - np.float32(1.0))
    low, high = along.min(), along.max()
    return (along - low) / max(high - low, np.float32(1.0))


def _upsample(coarse: np.ndarray, shape) -> np.ndarray:
    """Bilinear interpolation of a coarse grid over `shape`, corners on corners."""
    height, width = shape
    y = np.arange(height, dtype=np.float32) * np.float32((coarse.shape[0] - 1) / max(height - 1, 1))
    x = np.arange(width, dtype=np.float32) * np.float32((coarse.shape[1] - 1) / max(width - 1, 1))
    y0 = np.minimum(y.astype(int), coarse.shape[0] - 2)
    x0 = np.minimum(x.astype(int), coarse.shape[1] - 2)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    rows = coarse[y0]
    top = rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx
    rows = coarse[y0 + 1]
    bottom = rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def light(rng: np.random.Generator, image: np.ndarray, *, brightness, gradient) -> np.ndarray:
    """Lighting over a whole rendered image, then grey grain and rounding to 8 bits, as the embedded sources'
    photographs have it: a brightness drawn from `brightness` (low, high), a linear gradient of a strength drawn
    from `gradient` (low, high) in a random direction, a colour cast of +-6% a channel and grey grain of +-2%.

    Args:
        rng: the generator of the draws (direction, brightness, strength, cast, grain, in that order).
        image: float32 (H, W, 3) in [0, 1].
        brightness: (low, high) of the overall factor.
        gradient: (low, high) of the gradient's strength, across the image's width or height.

    Returns:
        uint8 (H, W, 3).
    """
    height, width = image.shape[:2]
    cos, sin = (np.float32(t) for t in cos_sin(int(rng.integers(360))))
    x = (np.arange(width, dtype=np.float32) + np.float32(0.5)) / np.float32(width) - np.float32(0.5)
    y = (np.arange(height, dtype=np.float32) + np.float32(0.5)) / np.float32(height) - np.float32(0.5)
    light = np.float32(rng.uniform(*brightness)) * (
        1 + np.float32(rng.uniform(*gradient)) * (cos * x[None] + sin * y[:, None])
    )
    cast = (255 * (1 + rng.uniform(-0.06, 0.06, 3))).astype(np.float32)
    grain = rng.random((height, width), dtype=np.float32)
    grain *= np.float32(0.04 * 255)
    grain += np.float32(0.5 - 0.02 * 255)  # +-2% of grey grain, and a half for the rounding below
    lit = image * light[..., None]
    lit *= cast
    lit += grain[..., None]
    return np.minimum(np.maximum(lit, 0), 255).astype(np.uint8)
