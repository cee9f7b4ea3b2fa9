"""A second SYNTHETIC clinic: lesions of the same kinds, photographed elsewhere, for external validation.

A model evaluated only on its own data set's test split has not met another hospital's camera,
lighting, population or file layout. Clinic 2 differs from the demo's clinic 1 (what ``run``
trains on) in each of those ways, so an external evaluation shows the drop it causes:

* **another camera and lighting** -- a phone-mounted dermatoscope (:func:`phone_camera`): warmer
  white balance, flatter contrast, a wider and darker vignette, softer focus, sensor noise, smaller
  images (96 px) saved at a lower JPEG quality;
* **another population** -- skin of every Fitzpatrick type (I-VI, more of III-V than clinic 1's
  light skin), recorded as ``skin_tone``; clinic 1 records none (its card says so);
* **another layout** -- a manifest CSV, ``labels.csv`` (``image_path,label`` with ``patient_id``,
  ``lesion_id``, ``diagnosis`` and the subgroup columns ``sex, age, anatom_site, skin_tone,
  clinic, device``), the images under ``images/``;
* **planted overlaps** -- a few images are re-uploads of clinic-1 images under new patient and
  lesion ids: some byte for byte (the exact hash finds them), some recompressed and resized to
  clinic 2's size (only the near-duplicate hash does). ``planted_overlaps.json`` lists each with
  the clinic-1 image it copies, so a test can check that a cross-data-set audit finds exactly
  those among the images a model was trained and tuned on (a copy of a clinic-1 *test* image is in
  the list too: it overlaps clinic 1, not what the model learned from).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from melanoma_mlops.data import demo, subgroups
from melanoma_mlops.data.demo_cohort import plan
from melanoma_mlops.data.demo_lesions import FITZPATRICK_SKIN, on_skin, render
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

CLINIC = "clinic 2"
DEVICE = "phone dermatoscope"
MANIFEST = "labels.csv"
PLANTED_FILE = "planted_overlaps.json"
IMAGE_SIZE, JPEG_QUALITY = 96, 80
#: Fitzpatrick types of clinic 2's patients (clinic 1: light skin, unrecorded).
SKIN_P = {"I": 0.05, "II": 0.2, "III": 0.3, "IV": 0.25, "V": 0.13, "VI": 0.07}
#: Re-uploads of clinic-1 images: byte-identical copies, and recompressed + resized ones.
EXACT_COPIES, NEAR_COPIES = 3, 3
COLUMNS = ("image_path", "label", "patient_id", "lesion_id", "diagnosis", *subgroups.SUBGROUP_COLUMNS)


def phone_camera(rng: np.random.Generator, img: np.ndarray, size: int = IMAGE_SIZE) -> Image.Image:
    """Clinic 2's photograph of a rendered lesion (clinic 1's dermoscope look in, phone out)."""
    side = img.shape[0]
    x = img.astype(np.float32) * np.array([1.08, 1.0, 0.86], np.float32)  # warmer white balance
    x = x * 0.9 + 10.0  # flatter contrast, lifted blacks
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r = np.hypot(xx - side / 2, yy - side / 2) / (side * 0.62)
    x *= np.clip(1.05 - 0.55 * r**3, 0.12, 1.0)[..., None]  # wider, darker vignette
    x += rng.normal(0, 6, x.shape)  # sensor noise
    photo = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.9))
    return photo.resize((size, size), Image.Resampling.LANCZOS)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _clinic1_rows(source: Path) -> list[dict[str, str]]:
    """The clinic-1 demo set's metadata rows (refused, with what to do, when it is not one)."""
    meta = source / "metadata.csv"
    if not (source / demo.MARKER).is_file() or not meta.is_file():
        raise DataError(
            f"--from {source}: no clinic-1 demo set there (metadata.csv and {demo.MARKER}); clinic 2 "
            f"re-uploads some of its images. Write it first: melanoma-mlops demo-data --out {source}"
        )
    with meta.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (source / f"{r['isic_id']}.jpg").is_file()]
    if len(rows) < EXACT_COPIES + NEAR_COPIES:
        raise DataError(f"--from {source}: {len(rows)} images, too few to re-upload from")
    return rows


def _planted(
    rng: np.random.Generator, source: Path, images: Path, rows: list[dict[str, str]], ids: list[int]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Copy clinic-1 images into clinic 2 under the image ids ``ids`` (named like every other image:
    only the planted list tells them apart): (manifest rows, the planted list)."""
    chosen = rng.choice(len(rows), size=EXACT_COPIES + NEAR_COPIES, replace=False)
    manifest_rows, planted = [], []
    for k, i in enumerate(chosen):
        row = rows[int(i)]
        original = source / f"{row['isic_id']}.jpg"
        kind = "exact" if k < EXACT_COPIES else "near"
        name = f"images/C2_{ids[k]:06d}.jpg"
        if kind == "exact":
            shutil.copyfile(original, images.parent / name)
        else:  # another upload of the same photograph: resized to this clinic's size, recompressed
            with Image.open(original) as im:
                smaller = im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            (images.parent / name).write_bytes(_jpeg(smaller, 85))
        manifest_rows.append(
            {
                "image_path": name,
                "label": int(row["diagnosis_1"] == "Malignant"),
                "patient_id": "",
                "lesion_id": f"C2L_{9_000_000 + ids[k]:07d}",
                "diagnosis": row.get("diagnosis_3", ""),
                "sex": row.get("sex", ""),
                "age": row.get("age_approx", ""),
                "anatom_site": row.get("anatom_site_general", ""),
                "skin_tone": "",
                "clinic": CLINIC,
                "device": DEVICE,
            }
        )
        planted.append(
            {
                "image_path": name,
                "kind": kind,
                "sha256": hashlib.sha256((images.parent / name).read_bytes()).hexdigest(),
                "clinic1_isic_id": row["isic_id"],
                "clinic1_file": original.name,
                "clinic1_sha256": hashlib.sha256(original.read_bytes()).hexdigest(),
            }
        )
    return manifest_rows, planted


def generate(
    out_dir: str | Path,
    source: str | Path,
    n: int = 300,
    malignant_share: float = 0.2,
    seed: int = 0,
    difficulty: float = demo.DEFAULT_DIFFICULTY,
) -> demo.DemoSummary:
    """Write clinic 2 (``n`` new images plus the planted re-uploads of ``source``'s) to ``out_dir``."""
    if n < 10:
        raise DataError(f"--n {n} is too small for an evaluation set: at least 10 images")
    source, out = Path(source), Path(out_dir)
    clinic1 = _clinic1_rows(source)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])  # another stream than clinic 1's for the same seed
    n_mal = max(3, round(n * malignant_share))
    lesions, planned = plan(rng, n, n_mal, difficulty, views=True)
    types = list(SKIN_P)
    skin_of: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    ids = [int(i) for i in rng.permutation(len(planned) + EXACT_COPIES + NEAR_COPIES)]
    photos: dict[int, Image.Image] = {}
    for i in sorted(range(len(planned)), key=lambda i: planned[i].reupload_of >= 0):  # sources first
        p = planned[i]
        person = str(p.row["patient_id"]) or f"lesion-{p.lesion}"
        skin = skin_of.setdefault(person, types[int(rng.choice(len(types), p=list(SKIN_P.values())))])
        if p.reupload_of >= 0:  # the same photograph uploaded again, at another JPEG quality
            photo, quality = photos[p.reupload_of], 70
        else:
            lesion = on_skin(np.random.default_rng([seed, 3, p.lesion]), lesions[p.lesion], skin)
            img, _ = render(rng, lesion, 128, p.view)
            photo, quality = phone_camera(rng, img), JPEG_QUALITY
            photos[i] = photo
        name = f"images/C2_{ids[i]:06d}.jpg"
        (out / name).write_bytes(_jpeg(photo, quality))
        rows.append(
            {
                "image_path": name,
                "label": lesions[p.lesion].label,
                "patient_id": f"C2P_{str(p.row['patient_id'])[3:]}" if p.row["patient_id"] else "",
                "lesion_id": f"C2L_{str(p.row['lesion_id'])[3:]}",
                "diagnosis": p.row["diagnosis_3"],
                "sex": p.row["sex"],
                "age": p.row["age_approx"],
                "anatom_site": p.row["anatom_site_general"],
                "skin_tone": skin,
                "clinic": CLINIC,
                "device": DEVICE,
            }
        )
    copies, planted = _planted(rng, source, images, clinic1, ids[len(planned) :])
    rows += copies
    with (out / MANIFEST).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: str(r["image_path"])))
    (out / PLANTED_FILE).write_text(
        json.dumps({"source": str(source.resolve()), "overlaps": planted}, indent=2)
    )
    n_pos = sum(int(r["label"]) for r in rows)
    summary = demo.DemoSummary(
        out,
        len(rows) - n_pos,
        n_pos,
        n_lesions=len({r["lesion_id"] for r in rows}),
        n_patients=len({r["patient_id"] for r in rows} - {""}),
        n_reuploads=len(planted),
    )
    _write_marker(out, summary, seed, source, planted)
    logger.info(
        "wrote clinic 2: %d images (%d planted re-uploads of %s) to %s", len(rows), len(planted), source, out
    )
    return summary


def _write_marker(
    out: Path, s: demo.DemoSummary, seed: int, source: Path, planted: list[dict[str, object]]
) -> None:
    kinds = [str(p["kind"]) for p in planted]
    (out / demo.MARKER).write_text(
        f"{demo.SYNTHETIC_NOTE}\n"
        f"{demo.marker_line(s.n_benign + s.n_malignant)}({s.n_benign} benign, {s.n_malignant} malignant), "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} px, seed {seed}\n"
        f"generator: {demo.GENERATOR_VERSION}, {CLINIC} ({DEVICE}; Fitzpatrick skin types "
        f"{', '.join(FITZPATRICK_SKIN)}), layout manifest ({MANIFEST})\n"
        f"lesions: {s.n_lesions}, patients: {s.n_patients}\n"
        f"planted re-uploads of clinic-1 images from {source}: {kinds.count('exact')} exact copies, "
        f"{kinds.count('near')} recompressed and resized (only the near-duplicate hash finds those); "
        f"listed in {PLANTED_FILE}\n"
    )
