"""Drawing of toy scenes: a background, a class-specific body and one visible part per attribute.

Every element is painted through a binary mask onto the canvas and into an *owner map* that
records which element is visible at each pixel; the attribute masks returned with an image are
read off that map, so they are exact: switching one attribute on or off changes the image only
inside that attribute's mask. Each element draws its random details from its own seeded stream,
so toggling one attribute never moves another part. Scenes are drawn at twice the output size and
box-filtered down, which anti-aliases the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .scene import ATTRIBUTES, Scene

BODY_ID = 30
OCCLUDER_ID = 40

# Body colours per class (RGB), jittered per image; neighbouring classes overlap on purpose.
PALETTES = {
    "truck": [(200, 40, 40), (40, 70, 180), (230, 200, 40), (235, 235, 235), (60, 140, 60)],
    "car": [(200, 40, 40), (40, 70, 180), (30, 30, 30), (235, 235, 235), (230, 130, 30)],
    "plane": [(235, 235, 235), (190, 190, 200), (40, 70, 180), (200, 40, 40)],
    "ship": [(235, 235, 235), (200, 40, 40), (30, 30, 30), (40, 70, 180)],
    "cat": [(220, 130, 50), (120, 120, 120), (40, 35, 30), (235, 220, 200)],
    "dog": [(150, 90, 40), (210, 170, 110), (40, 35, 30), (235, 220, 200)],
    "equine": [(120, 70, 30), (40, 35, 30), (235, 230, 225), (160, 110, 60)],
    "deer": [(170, 110, 60), (200, 150, 90), (120, 80, 45)],
    "frog": [(60, 150, 50), (120, 160, 40), (40, 110, 80), (200, 180, 40)],
    "bird": [(40, 90, 200), (220, 50, 40), (240, 200, 40), (90, 60, 40), (240, 240, 240)],
}
EYE_COLOURS = [(40, 220, 60), (250, 220, 0), (0, 170, 255), (255, 60, 200)]
GLYPHS = "ABEHKMRSTXZ0123456789"


@dataclass
class Anchors:
    """Where parts attach to a body: its box, its front direction and its head."""

    x0: float
    y0: float
    x1: float
    y1: float
    facing: int  # +1: the front is on the right
    head: tuple[float, float, float]  # centre x, centre y, radius

    @property
    def rear(self) -> float:
        return self.x0 if self.facing > 0 else self.x1

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2


class Canvas:
    """An RGB canvas plus an owner map of which element is visible where (kept only when
    ``track_owner``: an image alone needs no masks)."""

    def __init__(self, background: np.ndarray, track_owner: bool = True):
        self.size = background.shape[0]
        self.image = Image.fromarray(background)
        self.owner = Image.new("L", (self.size, self.size), 0) if track_owner else None
        self.body: Image.Image | None = None  # the body's silhouette, once painted

    def mask(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        m = Image.new("L", (self.size, self.size), 0)
        return m, ImageDraw.Draw(m)

    def paint(self, element: int, mask: Image.Image, fill) -> None:
        """Paint ``fill`` (an RGB tuple or image) through ``mask`` and record the owner."""
        self.image.paste(fill, (0, 0), mask)
        if self.owner is not None:
            self.owner.paste(element, (0, 0), mask)


def _rng(scene: Scene, stream: int) -> np.random.Generator:
    return np.random.default_rng([scene.seed, stream])


def _jitter(rng, colour, amount=25):
    return tuple(min(max(int(c + rng.integers(-amount, amount + 1)), 0), 255) for c in colour)


def _darker(colour, f=0.55):
    return tuple(int(c * f) for c in colour)


@lru_cache(maxsize=8)
def _font(px: int):
    return ImageFont.load_default(size=px)


# -- backgrounds -----------------------------------------------------------------------------
def _background(kind: str, S: int, rng) -> np.ndarray:
    y = np.linspace(0, 1, S)[:, None, None]
    tint = rng.integers(-20, 21, size=3)
    if kind == "sky":
        top, bottom = np.array([90, 150, 230]), np.array([190, 220, 250])
    elif kind == "grass":
        top, bottom = np.array([150, 200, 240]), np.array([70, 140, 50])
        y = (y > 0.45) * 1.0
    elif kind == "sand":
        top, bottom = np.array([230, 210, 160]), np.array([200, 170, 110])
    elif kind == "road":
        top, bottom = np.array([170, 190, 210]), np.array([90, 90, 95])
        y = (y > 0.55) * 1.0
    elif kind == "indoor":
        top, bottom = np.array([220, 210, 190]), np.array([150, 120, 90])
        y = (y > 0.6) * 0.9
    else:  # dusk
        top, bottom = np.array([60, 40, 100]), np.array([230, 130, 80])
    img = top * (1 - y) + bottom * y + tint + rng.normal(0, 6, size=(S, S, 1))  # texture
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


# -- bodies ----------------------------------------------------------------------------------
def _body(canvas: Canvas, scene: Scene, rng) -> tuple[Anchors, tuple, Image.Image]:
    """Lay out the class-specific body (with head and legs): its anchors, colour and mask (its
    silhouette, painted later by :func:`render_scene`, after the parts behind it)."""
    S = canvas.size
    name = scene.class_name
    colour = _jitter(rng, PALETTES[name][int(rng.integers(len(PALETTES[name])))])
    f = 1 if rng.random() < 0.5 else -1
    scale = rng.uniform(0.85, 1.15)
    cx = S * rng.uniform(0.42, 0.58)
    cy = S * rng.uniform(0.50, 0.60)
    m, d = canvas.mask()

    def X(dx):  # a horizontal offset in the facing direction
        return cx + f * dx * S * scale

    def Y(dy):
        return cy + dy * S * scale

    def box(dx0, dy0, dx1, dy1):
        xs = sorted((X(dx0), X(dx1)))
        return [xs[0], Y(dy0), xs[1], Y(dy1)]

    def legs(xs, top, bottom, width):
        for dx in xs:
            d.rectangle(box(dx - width / 2, top, dx + width / 2, bottom), fill=255)

    head = (X(0.2), Y(-0.1), 0.06 * S * scale)
    if name == "truck":
        d.rectangle(box(-0.26, -0.12, 0.1, 0.08), fill=255)   # cargo box
        d.rectangle(box(0.1, -0.06, 0.25, 0.08), fill=255)    # cab
        head = (X(0.2), Y(-0.02), 0.04 * S * scale)
        extent = (-0.26, -0.12, 0.25, 0.08)
    elif name == "car":
        d.rounded_rectangle(box(-0.24, -0.02, 0.24, 0.08), radius=0.04 * S * scale, fill=255)
        d.polygon([(X(-0.14), Y(-0.02)), (X(-0.08), Y(-0.1)), (X(0.08), Y(-0.1)),
                   (X(0.15), Y(-0.02))], fill=255)
        head = (X(0.19), Y(0.01), 0.035 * S * scale)
        extent = (-0.24, -0.1, 0.24, 0.08)
    elif name == "plane":
        d.ellipse(box(-0.3, -0.045, 0.22, 0.045), fill=255)
        d.polygon([(X(0.2), Y(-0.03)), (X(0.32), Y(0.0)), (X(0.2), Y(0.03))], fill=255)
        head = (X(0.22), Y(-0.01), 0.03 * S * scale)
        extent = (-0.3, -0.045, 0.32, 0.045)
    elif name == "ship":
        d.polygon([(X(-0.28), Y(-0.04)), (X(0.3), Y(-0.04)), (X(0.2), Y(0.07)),
                   (X(-0.22), Y(0.07))], fill=255)
        d.rectangle(box(-0.1, -0.1, 0.06, -0.04), fill=255)
        head = (X(0.22), Y(-0.06), 0.03 * S * scale)
        extent = (-0.28, -0.1, 0.3, 0.07)
    elif name in ("cat", "dog"):
        w, h, r = (0.15, 0.08, 0.07) if name == "cat" else (0.18, 0.09, 0.075)
        legs([-w * 0.6, w * 0.6], 0.0, 0.16, 0.035)
        d.ellipse(box(-w, -h, w, h), fill=255)
        head = (X(w * 0.95), Y(-h - 0.02), r * S * scale)
        d.ellipse([head[0] - head[2], head[1] - head[2], head[0] + head[2], head[1] + head[2]],
                  fill=255)
        extent = (-w, -h - 0.02 - r, w * 0.95 + r, 0.16)
    elif name in ("equine", "deer"):
        w, h, t = (0.2, 0.09, 0.04) if name == "equine" else (0.16, 0.07, 0.025)
        legs([-w * 0.7, -w * 0.45, w * 0.45, w * 0.7], 0.0, 0.24, t)
        d.ellipse(box(-w, -h, w, h), fill=255)
        d.polygon([(X(w * 0.6), Y(-0.03)), (X(w * 0.95), Y(-0.2)), (X(w * 1.15), Y(-0.17)),
                   (X(w * 0.95), Y(0.0))], fill=255)   # neck
        r = 0.05 if name == "equine" else 0.04
        head = (X(w * 1.15), Y(-0.2), r * S * scale)
        d.ellipse([head[0] - head[2], head[1] - head[2] * 0.8, head[0] + head[2] * 1.2,
                   head[1] + head[2] * 0.8], fill=255)
        extent = (-w, -0.2 - r, w * 1.15 + r, 0.24)
    elif name == "frog":
        d.ellipse(box(-0.17, -0.06, 0.17, 0.07), fill=255)
        for dx in (-0.07, 0.07):  # eye bumps
            d.ellipse(box(dx - 0.04, -0.1, dx + 0.04, -0.03), fill=255)
        d.polygon([(X(-0.17), Y(0.02)), (X(-0.26), Y(0.09)), (X(-0.12), Y(0.08))], fill=255)
        d.polygon([(X(0.17), Y(0.02)), (X(0.26), Y(0.09)), (X(0.12), Y(0.08))], fill=255)
        head = (X(0.07), Y(-0.065), 0.035 * S * scale)
        extent = (-0.26, -0.1, 0.26, 0.09)
    else:  # bird
        legs([-0.02, 0.03], 0.04, 0.14, 0.012)
        d.ellipse(box(-0.13, -0.07, 0.1, 0.06), fill=255)
        head = (X(0.1), Y(-0.08), 0.055 * S * scale)
        d.ellipse([head[0] - head[2], head[1] - head[2], head[0] + head[2], head[1] + head[2]],
                  fill=255)
        extent = (-0.13, -0.08 - 0.055, 0.1 + 0.055, 0.14)
    x0, y0, x1, y1 = box(*extent)
    return Anchors(x0, y0, x1, y1, f, head), colour, m


# -- parts (one per attribute) ---------------------------------------------------------------
# Each draws its part into the mask ``m`` (through ``d``, its ImageDraw) and returns the fill: a
# colour or an image painted through the mask.
def _draw_wet(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    top = max(a.y1 - 0.05 * S, S * 0.62)
    d.rectangle([0, top, S, S], fill=255)
    water = np.zeros((S, S, 3), np.uint8)
    water[:] = _jitter(rng, (40, 110, 200), 20)
    rows = np.arange(S)
    waves = (np.sin(rows[:, None] * 0.9 + np.arange(S)[None, :] * 0.25 + rng.uniform(0, 6))
             > 0.85)
    water[waves] = (170, 210, 250)
    return Image.fromarray(water)


def _draw_long(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    d.rectangle([a.rear - f * 0.22 * S if f > 0 else a.rear,
                 a.y0 + a.height * 0.35,
                 a.rear if f > 0 else a.rear + 0.22 * S,
                 a.y0 + a.height * 0.75], fill=255)
    return _darker(colour, 0.85)


def _draw_tall(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    x = a.cx - f * 0.05 * S
    d.rectangle([x - 0.025 * S, a.y0 - 0.3 * S, x + 0.025 * S, a.y0 + 2], fill=255)
    d.rectangle([x - 0.05 * S, a.y0 - 0.3 * S, x + 0.05 * S, a.y0 - 0.26 * S], fill=255)
    return _darker(colour, 0.8)


def _draw_tail(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    rx, ry = a.rear, a.y0 + a.height * 0.3
    tip = (rx - f * 0.13 * S, ry - 0.12 * S)
    d.polygon([(rx, ry), (rx, ry + 0.05 * S), tip], fill=255)
    d.line([(rx, ry + 0.02 * S), tip], fill=255, width=max(2, S // 40))
    return _darker(colour, 0.6)


def _draw_metallic(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    m.paste(canvas.body)
    yy = np.linspace(0, 1, S)[:, None]
    grad = 110 + 120 * np.abs(np.sin((yy * 3 + rng.uniform(0, 1)) * np.pi)) * np.ones((1, S))
    metal = np.repeat(grad[:, :, None], 3, axis=2)
    metal[:, :, 2] += 12
    return Image.fromarray(np.clip(metal, 0, 255).astype(np.uint8))


def _draw_patterned(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    pat = Image.new("L", (S, S), 0)
    pd = ImageDraw.Draw(pat)
    if rng.random() < 0.5:  # stripes
        step, width = int(S * 0.07), max(2, int(S * 0.025))
        for k in range(-S, 2 * S, step):
            pd.line([(k, 0), (k + S // 3, S)], fill=255, width=width)
    else:  # spots
        for _ in range(40):
            x, y, r = rng.uniform(0, S), rng.uniform(0, S), S * rng.uniform(0.015, 0.03)
            pd.ellipse([x - r, y - r, x + r, y + r], fill=255)
    m.paste(canvas.body, (0, 0), pat)
    return _darker(colour, 0.35) if sum(colour) > 240 else (235, 225, 200)


def _draw_hairy(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    for _ in range(90):
        t = rng.uniform(0, 2 * np.pi)
        ex = a.cx + np.cos(t) * a.width * 0.42
        ey = (a.y0 + a.y1) / 2 + np.sin(t) * a.height * 0.42
        length = S * rng.uniform(0.03, 0.06)
        d.line([(ex, ey), (ex + np.cos(t) * length, ey + np.sin(t) * length)], fill=255,
               width=max(1, S // 100))
    return _darker(colour, 0.45)


def _draw_rectangular(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    x = a.cx + f * rng.uniform(-0.06, 0.02) * S
    d.rectangle([x - 0.1 * S, a.y0 - 0.12 * S, x + 0.1 * S, a.y0 + 0.02 * S], fill=255)
    d.rectangle([x - 0.1 * S + 3, a.y0 - 0.12 * S + 3, x + 0.1 * S - 3, a.y0 - 0.01 * S],
                fill=0)
    d.rectangle([x - 0.085 * S, a.y0 - 0.105 * S, x + 0.085 * S, a.y0 - 0.025 * S],
                fill=255)
    return _jitter(rng, (120, 120, 130), 30)


def _draw_wings(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    base = a.cx - f * 0.02 * S
    d.polygon([(base - 0.08 * S, a.y0 + a.height * 0.45), (base + 0.08 * S, a.y0 + a.height
               * 0.45), (base - f * 0.16 * S, a.y0 - 0.16 * S)], fill=255)
    return _darker(colour, 0.7) if sum(colour) > 300 else (225, 225, 235)


def _draw_wheels(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    r = 0.055 * S
    for x in (a.x0 + a.width * 0.2, a.x1 - a.width * 0.2):
        d.ellipse([x - r, a.y1 - r, x + r, a.y1 + r], fill=255)
    tyre = np.zeros((S, S, 3), np.uint8) + 25
    hub = Image.fromarray(tyre)
    hd = ImageDraw.Draw(hub)
    for x in (a.x0 + a.width * 0.2, a.x1 - a.width * 0.2):
        hd.ellipse([x - r * 0.45, a.y1 - r * 0.45, x + r * 0.45, a.y1 + r * 0.45],
                   fill=(190, 190, 190))
    return hub


def _draw_text(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    plate = Image.new("RGB", (S, S), (245, 245, 235) if sum(colour) < 450 else (20, 20, 20))
    px = max(8, int(S * 0.12))
    letters = "".join(GLYPHS[int(i)] for i in rng.integers(len(GLYPHS), size=3))
    x, y = a.cx - 0.1 * S, (a.y0 + a.y1) / 2 - px * 0.6
    td = ImageDraw.Draw(plate)
    ink = (20, 20, 20) if sum(colour) < 450 else (245, 245, 235)
    td.rectangle([x - 2, y, x + 0.22 * S, y + px * 1.15], fill=plate.getpixel((0, 0)))
    td.text((x, y), letters, fill=ink, font=_font(px))
    d.rectangle([x - 2, y, x + 0.22 * S, y + px * 1.15], fill=255)
    return plate


def _draw_mane(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    hx, hy, hr = a.head
    pts = [(hx - f * hr * 0.6, hy - hr * 0.9)]
    for k in range(1, 6):
        t = k / 5
        pts.append((hx - f * (hr * 0.6 + t * 0.12 * S), hy - hr * 0.9 + t * 0.16 * S
                    - (0.03 * S if k % 2 else 0)))
    pts += [(hx - f * (hr * 0.6 + 0.09 * S), hy + 0.16 * S), (hx - f * hr * 0.2, hy)]
    d.polygon(pts, fill=255)
    return _jitter(rng, (35, 25, 20), 15)


def _draw_ears(canvas: Canvas, m, d, a: Anchors, colour, rng):
    f = a.facing
    hx, hy, hr = a.head
    for dx in (-0.6, 0.3):
        x = hx + f * dx * hr
        d.polygon([(x - hr * 0.45, hy - hr * 0.6), (x + hr * 0.45, hy - hr * 0.6),
                   (x + f * hr * 0.1, hy - hr * 1.9)], fill=255)
    return _darker(colour, 0.7)


def _draw_floppy_ears(canvas: Canvas, m, d, a: Anchors, colour, rng):
    f = a.facing
    hx, hy, hr = a.head
    for dx in (-0.9, 0.6):
        x = hx + f * dx * hr
        d.ellipse([x - hr * 0.35, hy - hr * 0.4, x + hr * 0.35, hy + hr * 1.3], fill=255)
    return _darker(colour, 0.5)


def _draw_horns(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    hx, hy, hr = a.head
    w = max(2, S // 45)
    for dx in (-0.4, 0.3):
        x0, y0 = hx + f * dx * hr, hy - hr * 0.7
        x1, y1 = x0 - f * 0.03 * S, y0 - 0.13 * S
        d.line([(x0, y0), (x1, y1)], fill=255, width=w)
        d.line([(x0 - f * 0.01 * S, y0 - 0.06 * S), (x0 + f * 0.04 * S, y0 - 0.1 * S)],
               fill=255, width=w)
        d.line([(x1, y1 + 0.03 * S), (x1 - f * 0.05 * S, y1 - 0.02 * S)], fill=255, width=w)
    return _jitter(rng, (110, 80, 50), 15)


def _draw_long_snout(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    hx, hy, hr = a.head
    d.polygon([(hx + f * hr * 0.3, hy - hr * 0.45), (hx + f * (hr + 0.1 * S), hy),
               (hx + f * (hr + 0.1 * S), hy + hr * 0.35), (hx + f * hr * 0.3, hy + hr * 0.6)],
              fill=255)
    return _darker(colour, 0.8)


def _draw_beak(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    hx, hy, hr = a.head
    d.polygon([(hx + f * hr * 0.7, hy - hr * 0.4), (hx + f * (hr + 0.08 * S), hy + hr * 0.1),
               (hx + f * hr * 0.7, hy + hr * 0.5)], fill=255)
    return _jitter(rng, (250, 160, 20), 15)


def _draw_colored_eyes(canvas: Canvas, m, d, a: Anchors, colour, rng):
    S = canvas.size
    f = a.facing
    hx, hy, hr = a.head
    r = max(2.5, hr * 0.42)
    ex, ey = hx + f * hr * 0.35, hy - hr * 0.15
    d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=255)
    eye = Image.new("RGB", (S, S), EYE_COLOURS[int(rng.integers(len(EYE_COLOURS)))])
    ImageDraw.Draw(eye).ellipse([ex - r * 0.4, ey - r * 0.4, ex + r * 0.4, ey + r * 0.4],
                                fill=(0, 0, 0))
    return eye


PARTS = {
    "wet": _draw_wet,
    "long": _draw_long,
    "tall": _draw_tall,
    "tail": _draw_tail,
    "metallic": _draw_metallic,
    "patterned": _draw_patterned,
    "hairy": _draw_hairy,
    "rectangular": _draw_rectangular,
    "wings": _draw_wings,
    "wheels": _draw_wheels,
    "text": _draw_text,
    "mane": _draw_mane,
    "ears": _draw_ears,
    "floppy-ears": _draw_floppy_ears,
    "horns": _draw_horns,
    "long-snout": _draw_long_snout,
    "beak": _draw_beak,
    "colored-eyes": _draw_colored_eyes,
}


def _part(canvas: Canvas, attr: str, a: Anchors, colour, rng) -> None:
    if attr not in PARTS:  # pragma: no cover - the world validates attribute names
        raise ValueError(f"no drawing for attribute {attr!r}")
    m, d = canvas.mask()
    canvas.paint(ATTRIBUTES.index(attr) + 1, m, PARTS[attr](canvas, m, d, a, colour, rng))


# Drawing order: parts behind the body first, body overlays, then parts on top.
BEHIND = ("wet", "long", "tall", "tail")
OVERLAYS = ("metallic", "patterned", "hairy")
ON_TOP = ("rectangular", "wings", "wheels", "text", "mane", "ears", "floppy-ears", "horns",
          "long-snout", "beak", "colored-eyes")
assert sorted(BEHIND + OVERLAYS + ON_TOP) == sorted(ATTRIBUTES)


def _occluder(canvas: Canvas, rng) -> None:
    S = canvas.size
    m, d = canvas.mask()
    x, y = rng.uniform(0.1, 0.9) * S, rng.uniform(0.1, 0.9) * S
    r = rng.uniform(0.06, 0.12) * S
    if rng.random() < 0.5:
        d.ellipse([x - r, y - r, x + r, y + r], fill=255)
    else:
        d.rectangle([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=255)
    canvas.paint(OCCLUDER_ID, m, _jitter(rng, (128, 128, 128), 60))


def render_scene(scene: Scene, size: int = 64, noise: float = 5.0, occluder_prob: float = 0.2,
                 masks: bool = True):
    """Render ``scene`` to ``(uint8 image size x size x 3, {attribute: bool mask})``.

    A mask holds the pixels where that attribute's part is visible in the final image. Without
    ``masks`` the dict is empty and no owner map is kept (the same image, drawn faster).
    """
    S = 2 * size
    canvas = Canvas(_background(scene.background, S, _rng(scene, 1)), track_owner=masks)
    present = set(scene.present)
    # Parts behind the body need its anchors before it is painted: lay it out first.
    anchors, colour, body = _body(canvas, scene, _rng(scene, 2))
    for attr in BEHIND:
        if attr in present:
            _part(canvas, attr, anchors, colour, _rng(scene, 100 + ATTRIBUTES.index(attr)))
    canvas.paint(BODY_ID, body, colour)
    canvas.body = body
    for attr in OVERLAYS + ON_TOP:
        if attr in present:
            _part(canvas, attr, anchors, colour, _rng(scene, 100 + ATTRIBUTES.index(attr)))
    occ = _rng(scene, 3)
    if occ.random() < occluder_prob:
        _occluder(canvas, occ)
    image = canvas.image.resize((size, size), Image.BOX)
    arr = _rng(scene, 4).normal(0, noise, size=(size, size, 3))
    arr += np.asarray(image, dtype=np.float32)
    image = np.clip(np.rint(arr, out=arr), 0, 255, out=arr).astype(np.uint8)
    if not masks:
        return image, {}
    owner = np.asarray(canvas.owner)
    found = {}
    for attr in present:
        hi = owner == ATTRIBUTES.index(attr) + 1
        found[attr] = hi.reshape(size, 2, size, 2).any(axis=(1, 3))
    return image, found

