"""Drawing a SYNTHETIC lesion and photographing it: the pixels of the demo data set.

Every lesion has a latent *atypia* in [0, 1] (:func:`draw_atypia`) that drives the features the
ABCD rule of dermoscopy names - an irregular, asymmetric border, colour variegation and a larger
diameter - each with its own noise (:func:`make_lesion`). :func:`render` photographs it, the first
time or again as another view (rotated, rescaled, shifted, other lighting, sometimes blurred).
The random draws are made in a fixed order, so a seed gives the same images byte for byte.

Two sites are harder (:data:`SITE_LOOKS`), as in clinics: on *sun-damaged* head and neck skin the
background carries faint solar lentigines and a lesion's features follow its atypia only weakly and
with less contrast (lentigo maligna against solar lentigo); on *acral* skin (palms, soles) parallel
skin ridges run through lesion and background alike and the lesion's own pattern is weakened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

ATYPIA_MEANS = (0.3, 0.7)  # benign, malignant
#: Sites whose lesions are drawn harder to read, and how their skin looks.
SITE_LOOKS = {"head/neck": "sun-damaged", "palms/soles": "acral"}
#: On those sites the visible features follow the atypia this much (1 elsewhere) and the pigment
#: keeps this share of its contrast with the skin.
HARD_SIGNAL, HARD_CONTRAST = 0.35, 0.65


@dataclass
class Lesion:
    """One lesion's own appearance; every view of it shares these."""

    label: int
    atypia: float
    radius: float  # share of the image side
    harmonics: list[tuple[int, float, float]]
    stretch: float
    theta: float
    pigment: np.ndarray
    skin: np.ndarray
    patches: list[tuple[float, float, float, np.ndarray]] = field(default_factory=list)
    #: "" (trunk, limbs), "sun-damaged" or "acral": see SITE_LOOKS.
    look: str = ""


_DARK = np.array([[45, 30, 28], [95, 105, 135], [30, 25, 40], [70, 45, 40]], np.float32)
_BROWN = np.array([[150, 95, 70], [125, 80, 55], [105, 70, 50]], np.float32)


def draw_atypia(rng: np.random.Generator, label: int, difficulty: float) -> float:
    """The latent atypia of one lesion: class mean plus noise of sd ``0.4 * difficulty``, in [0, 1]."""
    return float(np.clip(ATYPIA_MEANS[label] + rng.normal(0, 0.4 * difficulty), 0.0, 1.0))


def make_lesion(rng: np.random.Generator, label: int, difficulty: float, site: str = "") -> Lesion:
    """Draw a lesion whose ABCD features all follow its atypia (plus their own noise); on a hard
    site (:data:`SITE_LOOKS`) they follow it only weakly, and the pigment has less contrast."""
    a = draw_atypia(rng, label, difficulty)
    look = SITE_LOOKS.get(site, "")
    # What the features show: the atypia itself, or on a hard site a faint echo of it.
    seen = a if not look else float(np.clip(0.5 + HARD_SIGNAL * (a - 0.5) + rng.normal(0, 0.08), 0, 1))
    amp = 0.005 + 0.14 * seen * rng.uniform(0.6, 1.4)
    n_patches = int(min(6, rng.poisson(0.4 + 4.5 * seen)))
    patches = []
    for _ in range(n_patches):
        colour = _DARK[rng.integers(0, len(_DARK))] if rng.random() < seen else _BROWN[rng.integers(0, 3)]
        px, py = rng.normal(0, 0.5, 2)
        patches.append((float(px), float(py), float(rng.uniform(0.25, 0.55)), colour))
    skin = np.array([225, 180, 155], np.float32) + rng.normal(0, 8, 3).astype(np.float32)
    pigment = np.array([120, 75, 50], np.float32) + rng.normal(0, 8, 3).astype(np.float32)
    if look:
        pigment = skin + HARD_CONTRAST * (pigment - skin)
    return Lesion(
        label=label,
        atypia=a,
        radius=float(np.clip(0.11 + 0.17 * seen + rng.normal(0, 0.025), 0.08, 0.38)),
        harmonics=[
            (k, amp * rng.uniform(0.5, 1.0) / (1 + 0.3 * k), rng.uniform(0, 2 * np.pi)) for k in range(2, 8)
        ],
        stretch=float(1.0 - rng.uniform(0, 0.1 + 0.3 * seen)),
        theta=float(rng.uniform(0, np.pi)),
        pigment=pigment,
        skin=skin,
        patches=patches,
        look=look,
    )


#: Skin and lesion pigment per Fitzpatrick type (I-VI): lighter skin to darker, the pigment darker
#: with it so a lesion still stands out, less on dark skin.
FITZPATRICK_SKIN = {
    "I": (240, 205, 185), "II": (225, 180, 155), "III": (200, 150, 115),
    "IV": (165, 115, 85), "V": (120, 82, 58), "VI": (80, 55, 42),
}  # fmt: skip
FITZPATRICK_PIGMENT = {
    "I": (125, 80, 55), "II": (120, 75, 50), "III": (100, 62, 40),
    "IV": (80, 50, 32), "V": (58, 38, 26), "VI": (40, 27, 20),
}  # fmt: skip


def on_skin(rng: np.random.Generator, lesion: Lesion, skin_type: str) -> Lesion:
    """The same lesion on the skin of a Fitzpatrick type (its pigment darkened to match)."""
    skin = np.array(FITZPATRICK_SKIN[skin_type], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    pigment = np.array(FITZPATRICK_PIGMENT[skin_type], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    if lesion.look:
        pigment = skin + HARD_CONTRAST * (pigment - skin)
    return dataclasses.replace(lesion, skin=skin, pigment=pigment)


def render(rng: np.random.Generator, lesion: Lesion, size: int, view: bool) -> tuple[np.ndarray, np.ndarray]:
    """One photograph of ``lesion`` (uint8 HxWx3) and its mask (bool HxW).

    ``view``: another photograph of the same lesion (rotated, rescaled, shifted, other lighting,
    sometimes slightly blurred) rather than the first one.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rot = rng.uniform(0, 2 * np.pi) if view else 0.0
    scale = rng.uniform(0.85, 1.15) if view else 1.0
    cx, cy = size / 2 + rng.normal(0, size * 0.06, 2)
    # Pixel -> lesion coordinates (in units of the lesion radius).
    r_px = lesion.radius * size * scale
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / r_px
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / r_px
    rx = u * np.cos(lesion.theta) + v * np.sin(lesion.theta)
    ry = (-u * np.sin(lesion.theta) + v * np.cos(lesion.theta)) / lesion.stretch
    dist, angle = np.hypot(rx, ry), np.arctan2(ry, rx)
    border = 1 + sum(a * np.cos(k * angle + p) for k, a, p in lesion.harmonics)
    edge = np.clip((border - dist) * r_px / (size * 0.02) + 0.5, 0, 1)  # soft edge
    shade = 1.0 + 0.06 * np.sin(xx / size * rng.uniform(2, 5) + rng.uniform(0, 6)) * np.cos(
        yy / size * rng.uniform(2, 5)
    )
    img = lesion.skin[None, None, :] * shade[..., None] + rng.normal(0, 4, (size, size, 3))
    pigment = np.broadcast_to(lesion.pigment, (size, size, 3)).copy()
    pigment *= (0.9 + 0.2 * (dist / np.maximum(border, 1e-3)))[..., None]  # darker centre
    strength = 0.85 * (0.5 + 0.5 * lesion.atypia)
    for px, py, spread, colour in lesion.patches:
        weight = np.exp(-((u - px) ** 2 + (v - py) ** 2) / (2 * spread**2))[..., None] * strength
        pigment = pigment * (1 - weight) + colour * weight
    img = img * (1 - edge[..., None]) + pigment * edge[..., None]
    _skin_look(rng, img, lesion, xx, yy, size)
    if lesion.look != "acral":  # no hair on palms and soles
        _hairs(rng, img, size)
    img *= rng.uniform(0.85, 1.12) * rng.normal(1.0, 0.03, 3) if view else 1.0  # lighting
    r_norm = np.hypot(xx - size / 2, yy - size / 2) / (size * 0.72)
    img *= np.clip(1.15 - r_norm**4, 0.2, 1.0)[..., None]  # dermoscope vignette
    out = np.clip(img, 0, 255).astype(np.uint8)
    if view and rng.random() < 0.5:
        blurred = Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        out = np.asarray(blurred)
    return out, edge > 0.5


def _skin_look(
    rng: np.random.Generator, img: np.ndarray, lesion: Lesion, xx: np.ndarray, yy: np.ndarray, size: int
) -> None:
    """Sun-damaged skin: faint brown blotches (solar lentigines) anywhere; acral skin: parallel ridges
    across lesion and background."""
    if lesion.look == "sun-damaged":
        for _ in range(rng.integers(3, 7)):
            bx, by = rng.uniform(0, size, 2)
            spread = size * rng.uniform(0.04, 0.1)
            weight = 0.35 * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * spread**2))
            img *= (1 - weight)[..., None] + weight[..., None] * (_BROWN[0] / 255.0)
    elif lesion.look == "acral":
        angle, period = rng.uniform(0, np.pi), size * rng.uniform(0.035, 0.05)
        ridges = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        img *= (1.0 - 0.12 * (ridges > 0.3))[..., None]


def _hairs(rng: np.random.Generator, img: np.ndarray, size: int) -> None:
    """Hairs on both classes: a nuisance signal the model must ignore."""
    for _ in range(rng.integers(0, 4)):
        x0, y0 = rng.uniform(0, size, 2)
        ang = rng.uniform(0, np.pi)
        t = np.linspace(-size, size, size * 4)
        hx = (x0 + t * np.cos(ang)).astype(int)
        hy = (y0 + t * np.sin(ang) + 3 * np.sin(t / 9)).astype(int)
        inside = (hx >= 0) & (hx < size) & (hy >= 0) & (hy < size)  # no hair along the image edge
        img[hy[inside], hx[inside]] *= 0.35
