"""A small data set in the ISIC 2024 challenge layout: train-metadata.csv + train-image.hdf5.

The challenge's HDF5 file holds one scalar member per image, named by isic_id, whose value is the
JPEG file's bytes; the CSV has ~55 columns of which the pipeline reads a handful. The images here
are the SYNTHETIC demo lesions (so a model can learn something), re-encoded as JPEG.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image

MELANOMA = "Malignant::Malignant melanocytic proliferations (Melanoma)::Melanoma Invasive"


def jpeg(path: Path) -> bytes:
    buf = io.BytesIO()
    with Image.open(path) as img:
        img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_isic2024(out: Path, demo_dir: Path, *, indeterminate: int = 0) -> Path:
    """Write ``out/train-metadata.csv`` and ``out/train-image.hdf5`` from the demo images.

    Three images per patient; ``indeterminate`` rows get a target that is neither 0 nor 1.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(demo_dir.glob("benign/*.png")) + sorted(demo_dir.glob("malignant/*.png"))
    rng = np.random.default_rng(0)
    rng.shuffle(paths)
    rows = []
    with h5py.File(out / "train-image.hdf5", "w") as f:
        for i, path in enumerate(paths):
            isic_id = f"ISIC_{i:07d}"
            f.create_dataset(isic_id, data=np.array(jpeg(path)))  # a scalar fixed-length bytes member
            malignant = path.parent.name == "malignant"
            rows.append(
                {
                    "isic_id": isic_id,
                    "target": "2" if i < indeterminate else int(malignant),
                    "patient_id": f"IP_{i // 3:07d}",
                    "age_approx": 40 + i % 40,
                    "sex": "male" if i % 2 else "female",
                    "anatom_site_general": "posterior torso",
                    "clin_size_long_diam_mm": round(3 + rng.uniform(0, 5), 2),
                    "image_type": "TBP tile: close-up",
                    "tbp_lv_A": round(rng.uniform(10, 30), 3),
                    "lesion_id": f"IL_{i:07d}" if malignant else "",
                    "iddx_full": MELANOMA if malignant else "Benign",
                    "iddx_1": "Malignant" if malignant else "Benign",
                }
            )
    pd.DataFrame(rows).to_csv(out / "train-metadata.csv", index=False)
    return out
