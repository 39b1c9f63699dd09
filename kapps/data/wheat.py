"""The embedded `wheat` source: deterministic synthetic images of wheat ears with point annotations of spike tips,
spike bases and spikelets, for heatmap regression and counting without a download (the task of Pound et al. 2017,
"Deep learning for multi-task plant phenotyping", on the ACID images).

An image is soil (smooth noise at two scales, grain), straw and stems, a few long curved leaves, then 1 to
`max_spikes` ears over them, each on its own stem: a rachis with 10 to 25 spikelets in two staggered rows along
it (small shaded ellipses, each lower one overlapped by the next as on a real ear), a terminal spikelet at the tip
and, on most ears, awns (thin lines from the spikelets). Ears vary in length, angle, spikelet size and colour
(green to golden), and overlap one another; lighting varies in brightness, direction and colour cast.

Drawn with NumPy (thin lines with scikit-image's anti-aliased `line_aa`) from a NumPy `Generator(PCG64)` per
split, angles in whole degrees from `kapps.data.raster`'s quantised table: one seed draws one image.
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.data.base import Data, check_seed, check_sizes, points_dataset
from kapps.data.raster import cos_sin, light

import numpy as np

WHEAT_POINT_TYPES = ("spike_tip", "spike_base", "spikelet")
TIP, BASE, SPIKELET = range(3)

_SPLITS = ("train", "val", "test")
_GREEN = np.array([0.30, 0.50, 0.16], np.float32)
_GOLDEN = np.array([0.88, 0.74, 0.40], np.float32)
_STRAW = np.array([0.78, 0.68, 0.45], np.float32)


def render_wheat(
    rng: np.random.Generator, *, image_size=(256, 256), max_spikes: int = 8, spikelets=(10, 25), zoom: float = 1.0
) -> dict[str, np.ndarray]:
    """Draw one wheat image with the points of its ears (see the module's description).

    Annotations follow what can be seen: an ear is only placed where it leaves the tip and base of every earlier
    ear in view and at least half of each earlier ear's spikelets, so every ear has exactly one tip and one base
    point; a spikelet is annotated when the pixel at its centre shows it (ears drawn later hide some).

    Args:
        rng: the random generator; the image depends on nothing else.
        image_size: (height, width) in pixels; lengths scale with the shorter side (256 is the reference).
        max_spikes: most ears in an image; the number is drawn uniformly from 1..max_spikes, and fewer are placed
            when an ear finds no place after a few tries.
        spikelets: (fewest, most) spikelets an ear has (its terminal spikelet not counted), drawn uniformly.
        zoom: how much larger than at 1 the scene is drawn: every length (ears, spikelets, leaves, straw, soil
            clods) is `zoom` times its length at 1, so a 256-pixel image at zoom 2 shows ears as large, in pixels,
            as a 512-pixel image at zoom 1 does, in a quarter of the area (fewer ears fit).

    Returns:
        A dict of NumPy arrays: "image" uint8 (H, W, 3); "points" float32 (n, 2) relative [x, y], x the pixel
        coordinate divided by W where 0 is the left edge of the image and pixel column j has its centre at
        (j + 0.5) / W (y likewise with H); "types" int32 (n,) indices of `WHEAT_POINT_TYPES`; "spikes" int32 (n,)
        the ear each point belongs to; "ears" uint8 (H, W), k + 1 where ear k (its rachis and spikelets) is seen,
        0 elsewhere. Points come ear by ear in drawing order: tip, base, then the visible spikelets from the base
        up.
    """
    image_size = _check_size(image_size)
    max_spikes = _check_max_spikes(max_spikes)
    spikelets = _check_spikelets(spikelets)
    zoom = _check_zoom(zoom)
    return _render(rng, image_size=image_size, max_spikes=max_spikes, spikelets=spikelets, zoom=zoom)


def load_wheat(
    *,
    image_size=(256, 256),
    seed: int = 0,
    sizes=(1000, 200, 200),
    max_spikes: int = 8,
    spikelets=(10, 25),
    zoom: float = 1.0,
    max_points: int | None = None,
) -> Data:
    """The `wheat` source: train, val and test splits of synthetic wheat images with points (see `render_wheat`).

    Each split is drawn from its own generator, seeded from (`seed`, split), so the test split is independent of
    the training split and the same for one seed whatever the sizes of the other splits; a split's first k images
    do not depend on its size. Images are kept as 8-bit arrays (a 256x256 image takes 192 KiB).

    Args:
        image_size: (height, width) of the images.
        seed: non-negative integer seed of all three splits.
        sizes: number of images in (train, val, test).
        max_spikes: most ears in one image.
        spikelets: (fewest, most) spikelets of one ear.
        zoom: how much larger than at 1 every length is drawn (see `render_wheat`).
        max_points: rows of the padded targets; by default the most an image can have,
            `max_spikes * (2 + spikelets[1])`; points past it are dropped.

    Returns:
        A `Data` whose `class_names` are `WHEAT_POINT_TYPES` and whose splits are unbatched `(image, targets)`: image
        uint8 (H, W, 3) (`kapps.data.pipeline` scales batches of them to [0, 1]); targets {"points": float32
        (max_points, 2) relative [x, y], padding rows -1, "types": int32 (max_points,), padding -1}
        (`kapps.data.keypoints` describes the layout).
    """
    image_size = _check_size(image_size)
    max_spikes = _check_max_spikes(max_spikes)
    spikelets = _check_spikelets(spikelets)
    zoom = _check_zoom(zoom)
    most = max_spikes * (2 + spikelets[1])
    max_points = most if max_points is None else _check_max_points(max_points)
    seed = check_seed(seed)
    sizes = check_sizes(sizes)
    splits = {}
    for index, (name, count) in enumerate(zip(_SPLITS, sizes, strict=True)):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))
        scenes = [
            _render(rng, image_size=image_size, max_spikes=max_spikes, spikelets=spikelets, zoom=zoom)
            for _ in range(count)
        ]
        splits[name] = points_dataset(
            [scene["image"] for scene in scenes],
            [scene["points"] for scene in scenes],
            [scene["types"] for scene in scenes],
            image_size=image_size,
            max_points=max_points,
        )
    return Data(
        spec="wheat",
        **splits,
        input_shape=(*image_size, 3),
        class_names=list(WHEAT_POINT_TYPES),
        sizes=dict(zip(_SPLITS, sizes, strict=True)),
    )


class _Canvas:
    """An image being drawn, float32 (H, W, 3) in [0, 1], with the maps that say what each pixel shows: `ears`
    (ear k + 1) and `spikelets` (spikelet id + 1). A shape covering at least half a pixel takes the pixel."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.height, self.width = image.shape[:2]
        self.ears = np.zeros((self.height, self.width), np.uint8)
        self.spikelets = np.zeros((self.height, self.width), np.int32)

    def copy(self) -> _Canvas:
        other = _Canvas(self.image.copy())
        other.ears, other.spikelets = self.ears.copy(), self.spikelets.copy()
        return other

    def _window(self, x0: float, x1: float, y0: float, y1: float):
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.width)
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5)
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5)
        return (slice(r0, r1), slice(c0, c1)), xs, ys

    def _paint(self, window, alpha: np.ndarray, colour: np.ndarray, ear: int | None, spikelet: int | None) -> None:
        region = self.image[window]
        region += alpha[..., None] * (colour - region)
        if ear is not None:
            taken = alpha >= 0.5
            self.ears[window][taken] = ear
            self.spikelets[window][taken] = spikelet or 0

    def ellipse(self, centre, a: float, b: float, degrees: int, colour, *, ear=None, spikelet=None) -> None:
        """A shaded ellipse of semi-axes `a` (along `degrees`) and `b`, lighter at its middle, with a darker rim."""
        cx, cy = centre
        found = self._window(cx - a - 1, cx + a + 1, cy - a - 1, cy + a + 1)
        if found is None:
            return
        window, xs, ys = found
        cos, sin = (np.float32(t) for t in cos_sin(degrees))
        dx, dy = xs - np.float32(cx), ys - np.float32(cy)
        u, v = (cos * dx + sin * dy) / np.float32(a), (cos * dy - sin * dx) / np.float32(b)
        rho2 = u * u + v * v
        rho = np.sqrt(rho2)
        alpha = _clip((1 - rho) * np.float32(b) + np.float32(0.5), 0, 1)
        shade = np.float32(1.18) - np.float32(0.42) * rho2 - np.float32(0.18) * _clip(rho - 0.78, 0, 1) / 0.22
        self._paint(window, alpha, np.asarray(colour, np.float32) * shade[..., None], ear, spikelet)

    def stroke(self, points: np.ndarray, widths: np.ndarray, colour, *, ear=None, step: float = 24.0) -> None:
        """A polyline through `points` (k, 2) of width varying linearly between `widths` (k,), anti-aliased,
        drawn as pieces at most `step` pixels long so that each works on a small window."""
        colour = np.asarray(colour, np.float32)
        for k in range(len(points) - 1):
            p, q, wp, wq = points[k], points[k + 1], widths[k], widths[k + 1]
            pieces = max(int(np.ceil(np.hypot(*(q - p)) / step)), 1)
            for piece in range(pieces):
                f0, f1 = piece / pieces, (piece + 1) / pieces
                self._segment(p + f0 * (q - p), p + f1 * (q - p), wp + f0 * (wq - wp), wp + f1 * (wq - wp), colour, ear)

    def _segment(self, p, q, wp: float, wq: float, colour, ear) -> None:
        reach = max(wp, wq) / 2 + 1
        found = self._window(min(p[0], q[0]) - reach, max(p[0], q[0]) + reach, min(p[1], q[1]) - reach,
                             max(p[1], q[1]) + reach)  # fmt: skip
        if found is None:
            return
        window, xs, ys = found
        px, py = np.float32(p[0]), np.float32(p[1])
        dx, dy = np.float32(q[0] - p[0]), np.float32(q[1] - p[1])
        t = _clip(((xs - px) * dx + (ys - py) * dy) / max(dx * dx + dy * dy, np.float32(1e-6)), 0, 1)
        distance = np.hypot(xs - (px + t * dx), ys - (py + t * dy))
        half = (np.float32(wp) + np.float32(wq - wp) * t) / 2
        alpha = _clip(half - distance + np.float32(0.5), 0, 1)
        self._paint(window, alpha, colour, ear, None if ear is None else 0)

    def line(self, p, q, colour, *, opacity: float = 1.0) -> None:
        """A one-pixel anti-aliased line (Xiaolin Wu's, scikit-image's `line_aa`); it changes no map."""
        from skimage.draw import line_aa

        rows, cols, value = line_aa(int(round(p[1])), int(round(p[0])), int(round(q[1])), int(round(q[0])))
        keep = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        rows, cols = rows[keep], cols[keep]
        alpha = (value[keep] * opacity).astype(np.float32)[:, None]
        self.image[rows, cols] += alpha * (np.asarray(colour, np.float32) - self.image[rows, cols])


def _render(rng, *, image_size, max_spikes: int, spikelets, zoom: float) -> dict[str, np.ndarray]:
    height, width = image_size
    scale = zoom * min(height, width) / 256.0  # pixels per unit of a 256-pixel scene
    canvas = _Canvas(_soil(rng, image_size, zoom))
    for _ in range(int(rng.integers(8, 30))):
        _straw(rng, canvas, scale)
    for _ in range(int(rng.integers(1, 7))):
        _leaf(rng, canvas, scale)

    target = int(rng.integers(1, max_spikes + 1))
    ears: list[dict] = []
    for _ in range(4 * target):
        if len(ears) == target:
            break
        ear = _plan_ear(rng, image_size=image_size, scale=scale, spikelets=spikelets, first_id=_next_id(ears))
        if ear is None:
            continue
        trial = canvas.copy()
        _draw_ear(rng, trial, ear, index=len(ears))
        if _keeps_in_view(trial, [*ears, ear]):
            canvas = trial
            ears.append(ear)

    points, types, owners = [], [], []
    for k, ear in enumerate(ears):
        seen = list(ear["spikelets"][_at(canvas.spikelets, ear["spikelets"]) == _ids(ear)])
        points += [ear["tip"], ear["base"], *seen]
        types += [TIP, BASE] + [SPIKELET] * len(seen)
        owners += [k] * (2 + len(seen))
    image = light(rng, canvas.image, brightness=(0.8, 1.2), gradient=(0.0, 0.5))
    scale_xy = np.array([width, height], np.float64)
    return {
        "image": image,
        "points": (np.array(points, np.float64).reshape(-1, 2) / scale_xy).astype(np.float32),
        "types": np.array(types, np.int32),
        "spikes": np.array(owners, np.int32),
        "ears": canvas.ears,
    }


def _next_id(ears: list[dict]) -> int:
    return ears[-1]["first_id"] + len(ears[-1]["spikelets"]) if ears else 0


def _at(grid: np.ndarray, points) -> np.ndarray:
    """The values of `grid` at the pixels holding `points` (k, 2) (x, y); -1 outside it."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    cols, rows = np.floor(points[:, 0]).astype(np.int64), np.floor(points[:, 1]).astype(np.int64)
    inside = (rows >= 0) & (rows < grid.shape[0]) & (cols >= 0) & (cols < grid.shape[1])
    values = np.full(len(points), -1, np.int64)
    values[inside] = grid[rows[inside], cols[inside]]
    return values


def _keeps_in_view(canvas: _Canvas, ears: list[dict]) -> bool:
    """Whether every ear's tip and base show that ear and at least half of its spikelets show themselves (all of
    the newest ear's)."""
    for k, ear in enumerate(ears):
        if np.any(_at(canvas.ears, [ear["tip"], ear["base"]]) != k + 1):
            return False
        seen = np.count_nonzero(_at(canvas.spikelets, ear["spikelets"]) == _ids(ear))
        if seen < (len(ear["spikelets"]) if k == len(ears) - 1 else len(ear["spikelets"]) / 2):
            return False
    return True


def _ids(ear: dict) -> np.ndarray:
    """The ids an ear's spikelets have in the spikelet map."""
    return ear["first_id"] + 1 + np.arange(len(ear["spikelets"]))


def _plan_ear(rng, *, image_size, scale: float, spikelets, first_id: int) -> dict | None:
    """An ear's geometry and colours, or None when it does not fit in the image at the drawn angle."""
    height, width = image_size
    count = int(rng.integers(spikelets[0], spikelets[1] + 1))
    spacing = rng.uniform(5.0, 7.0) * scale  # between the spikelets of one row
    tilt = int(rng.integers(14, 30))  # of each spikelet away from the axis, degrees
    degrees = (270 + int(rng.integers(-70, 71))) % 360  # from base to tip; 270 points up
    cos, sin = cos_sin(degrees)
    axis, normal = np.array([cos, sin]), np.array([-sin, cos])
    along = spacing * (0.55 + np.arange(count) / 2)
    top = along[-1] + 0.55 * spacing  # the terminal spikelet's centre
    terminal = (0.7 * spacing, 0.38 * spacing)
    length = top + 0.72 * terminal[0]
    margin = 1.2 * spacing
    reach_x, reach_y = length * cos, length * sin
    x_range = (margin - min(reach_x, 0), width - margin - max(reach_x, 0))
    y_range = (margin - min(reach_y, 0), height - margin - max(reach_y, 0))
    if x_range[0] >= x_range[1] or y_range[0] >= y_range[1]:
        return None
    base = np.array([rng.uniform(*x_range), rng.uniform(*y_range)])
    sides = np.where(np.arange(count) % 2 == 0, 1.0, -1.0)
    offset = 0.42 * spacing
    centres = base + along[:, None] * axis + (sides * offset)[:, None] * normal
    maturity = rng.random()
    colour = _clip(_GREEN + (_GOLDEN - _GREEN) * maturity + rng.uniform(-0.05, 0.05, 3), 0, 1).astype(np.float32)
    return {
        "base": base,
        "tip": base + length * axis,
        "axis": axis,
        "degrees": degrees,
        "spikelets": centres,
        "sides": sides,
        "tilt": tilt,
        "spacing": spacing,
        "top": base + top * axis,
        "terminal": terminal,
        "colour": colour,
        "stem_colour": (0.8 * (_GREEN + (_STRAW - _GREEN) * 0.9 * maturity)).astype(np.float32),
        "awns": rng.uniform(0.35, 0.9) * length if rng.random() < 0.7 else 0.0,
        "stem": rng.uniform(0.25, 0.75) * 256 * scale,
        "first_id": first_id,
    }


def _draw_ear(rng, canvas: _Canvas, ear: dict, *, index: int) -> None:
    """An ear on `canvas`: its stem, awns, rachis and the node at its base, then its spikelets from the base up
    and the terminal one."""
    spacing, colour = ear["spacing"], ear["colour"]
    # The stem leaves the base away from the tip and bends towards the ground (down, 90 degrees).
    direction, points = (ear["degrees"] + 180) % 360, [ear["base"]]
    for _ in range(6):
        turn = ((90 - direction + 180) % 360) - 180
        direction = (direction + int(_clip(turn, -12, 12)) + int(rng.integers(-4, 5))) % 360
        points.append(points[-1] + ear["stem"] / 6 * np.array(cos_sin(direction)))
    stem_width = spacing * rng.uniform(0.3, 0.42)
    canvas.stroke(np.array(points), np.full(len(points), stem_width), ear["stem_colour"], ear=0)

    tilts = ear["degrees"] + (ear["sides"] * ear["tilt"]).astype(int)
    a, b = 0.75 * spacing, 0.42 * spacing
    if ear["awns"]:
        awn_colour = _clip(colour * 1.08 + 0.04, 0, 1)
        for centre, degrees, side in zip(ear["spikelets"], tilts, ear["sides"], strict=True):
            start = centre + a * np.array(cos_sin(degrees))
            spread = ear["degrees"] + int(side * (ear["tilt"] * 0.4 + rng.integers(-4, 5)))
            canvas.line(start, start + ear["awns"] * rng.uniform(0.7, 1.0) * np.array(cos_sin(spread)), awn_colour)
        for turn in (-5, 0, 5):
            canvas.line(ear["tip"], ear["tip"] + ear["awns"] * np.array(cos_sin(ear["degrees"] + turn)), awn_colour)

    rachis = np.array([ear["base"] - 0.3 * spacing * ear["axis"], ear["top"]])
    canvas.stroke(rachis, np.full(2, 0.3 * spacing), 0.8 * colour, ear=index + 1)
    canvas.ellipse(ear["base"], 0.45 * spacing, 0.3 * spacing, ear["degrees"], colour, ear=index + 1, spikelet=0)
    for g, (centre, degrees) in enumerate(zip(ear["spikelets"], tilts, strict=True), start=ear["first_id"] + 1):
        shade = _clip(colour * rng.uniform(0.92, 1.08), 0, 1)
        size = rng.uniform(0.92, 1.08)
        canvas.ellipse(centre, a * size, b * size, int(degrees), shade, ear=index + 1, spikelet=g)
    canvas.ellipse(ear["top"], *ear["terminal"], ear["degrees"], colour, ear=index + 1, spikelet=0)


def _soil(rng, image_size, zoom: float) -> np.ndarray:
    """Soil: a brown between dark and light, clods of smooth noise at two scales (`zoom` times fewer, larger, clods
    across the image), and fine grain."""
    colour = (np.array([0.22, 0.16, 0.10]) + rng.random() * np.array([0.30, 0.26, 0.20])).astype(np.float32)
    coarse = _noise(rng, image_size, max(1, round(int(rng.integers(3, 7)) / zoom)))
    fine = _noise(rng, image_size, max(1, round(int(rng.integers(24, 48)) / zoom)))
    grain = rng.random(image_size, dtype=np.float32)
    light = np.float32(0.7) + np.float32(0.4) * coarse + np.float32(0.35) * (fine - 0.5) + np.float32(0.12) * grain
    return colour * light[..., None]


def _noise(rng, image_size, cells: int) -> np.ndarray:
    """Smooth noise (H, W) in [0, 1]: a (cells + 1)^2 grid of uniform values, bilinearly interpolated."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    (rows, row_weights), (cols, col_weights) = (_interpolation(size, cells) for size in image_size)
    across = grid[:, cols] * (1 - col_weights) + grid[:, cols + 1] * col_weights  # (cells + 1, W)
    return across[rows] * (1 - row_weights)[:, None] + across[rows + 1] * row_weights[:, None]


def _interpolation(size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of `size` pixel centres, the grid node below it and the weight of the node above."""
    at = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * np.float32(cells / size)
    low = np.minimum(at.astype(np.int64), cells - 1)
    return low, at - low


def _straw(rng, canvas: _Canvas, scale: float) -> None:
    """A piece of straw or a thin dead stem lying on the soil."""
    start = np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)])
    length = rng.uniform(0.08, 0.45) * 256 * scale
    end = start + length * np.array(cos_sin(int(rng.integers(360))))
    dry = _clip(_STRAW * rng.uniform(0.55, 1.0) + rng.uniform(-0.05, 0.05, 3), 0, 1)
    canvas.stroke(np.array([start, end]), np.full(2, rng.uniform(0.8, 2.5) * scale), dry)


def _leaf(rng, canvas: _Canvas, scale: float) -> None:
    """A long thin leaf: a curved centre line from a sheath to a point, widest a third of the way along."""
    pieces = 10
    length = rng.uniform(0.4, 1.0) * 256 * scale
    direction = (270 + int(rng.integers(-80, 81))) % 360
    bend = int(rng.integers(-9, 10))
    points = [np.array([rng.uniform(0, canvas.width), rng.uniform(0.3 * canvas.height, 1.1 * canvas.height)])]
    for k in range(pieces):
        points.append(points[-1] + length / pieces * np.array(cos_sin(direction + bend * k)))
    along = np.linspace(0, 1, pieces + 1)
    widths = rng.uniform(6, 13) * scale * np.minimum(1.0, along * 3 + 0.45) * (1 - along) ** 0.8
    green = np.array([rng.uniform(0.16, 0.4), rng.uniform(0.36, 0.58), rng.uniform(0.08, 0.22)], np.float32)
    canvas.stroke(np.array(points), widths, green)
    canvas.stroke(np.array(points), widths * 0.12, _clip(green * 1.25, 0, 1))


def _clip(values, low, high):
    """`np.clip`, without its overhead on the small windows drawn here."""
    return np.minimum(np.maximum(values, low), high)


def _check_size(image_size) -> tuple[int, int]:
    size = tuple(image_size)
    if len(size) != 2 or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 64 for s in size):
        raise ValueError(f"image_size must be (height, width) of at least 64 pixels each. Received: {image_size!r}")
    return int(size[0]), int(size[1])


def _check_max_spikes(max_spikes) -> int:
    if not isinstance(max_spikes, (int, np.integer)) or isinstance(max_spikes, bool) or not 1 <= max_spikes <= 32:
        raise ValueError(f"max_spikes must be an integer from 1 to 32. Received: max_spikes={max_spikes!r}")
    return int(max_spikes)


def _check_spikelets(spikelets: Sequence[int]) -> tuple[int, int]:
    pair = tuple(spikelets)
    if len(pair) != 2 or any(not isinstance(n, (int, np.integer)) for n in pair) or not 2 <= pair[0] <= pair[1] <= 40:
        raise ValueError(f"spikelets must be (fewest, most) with 2 <= fewest <= most <= 40. Received: {spikelets!r}")
    return int(pair[0]), int(pair[1])


def _check_zoom(zoom) -> float:
    if not isinstance(zoom, (int, float, np.integer, np.floating)) or isinstance(zoom, bool) or not 0.25 <= zoom <= 8:
        raise ValueError(f"zoom must be a number from 0.25 to 8. Received: zoom={zoom!r}")
    return float(zoom)


def _check_max_points(max_points) -> int:
    if not isinstance(max_points, (int, np.integer)) or isinstance(max_points, bool) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer. Received: max_points={max_points!r}")
    return int(max_points)
