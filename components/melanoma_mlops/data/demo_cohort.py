"""The SYNTHETIC demo cohort: which lesions, views, patients and metadata rows to write.

Shaped like HAM10000 / the ISIC Archive: several images (views) per lesion sharing a ``lesion_id``;
most lesions belong to a patient and some patients have several; about 1% of images are re-uploads
of another image filed under a new lesion id; class 1 mixes diagnoses as real exports do. The plan
draws lesions (:mod:`melanoma_mlops.data.demo_lesions`) but renders nothing: the writers of
:mod:`melanoma_mlops.data.demo` do, in the order the plan gives.

**Subgroups, with the frequencies of the public exports.** Sex per patient (ISIC 2020 and HAM10000:
about 52-54% male, under 1% missing; here 2% missing so the ``unknown`` slice shows), age as in
the archives (class 1 older), 1.5% missing, and the anatomical site drawn *per diagnosis* as the
dermatology literature places them: naevi on the trunk and limbs, basal and squamous cell carcinomas
mostly on the sun-exposed head and neck, solar lentigines on the face and hands, dermatofibromas on
the legs, acral naevi and acral lentiginous melanomas on palms and soles (1.5% missing).

**A subgroup that is genuinely harder** (:data:`HARD_SITES`): on the sun-damaged head and neck, a
lentigo maligna and a solar lentigo or pigmented keratosis look alike, and on palms and soles the
ridge pattern hides the lesion's own; lesions there are drawn with their atypia pulled toward the
middle and with less contrast (:func:`melanoma_mlops.data.demo_lesions.make_lesion`), so the model's
figures on those slices are lower than on the trunk, for the same reason as in clinics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from melanoma_mlops.data.demo_lesions import SITE_LOOKS, Lesion, make_lesion

#: Images per lesion and lesions per patient (HAM10000 has 1.34 images per lesion on average).
VIEWS_P = (0.62, 0.22, 0.09, 0.05, 0.02)
LESIONS_PER_PATIENT_P = (0.78, 0.14, 0.06, 0.02)
SHARE_WITHOUT_PATIENT = 0.25
REUPLOAD_SHARE = 0.01
# (share within the class, diagnosis_2, diagnosis_3): the ISIC Archive's diagnosis hierarchy.
DIAGNOSES: dict[int, tuple[tuple[float, str, str], ...]] = {
    1: (
        (0.42, "Malignant melanocytic proliferations (Melanoma)", "Melanoma Invasive"),
        (0.20, "Malignant melanocytic proliferations (Melanoma)", "Melanoma in situ"),
        (0.28, "Malignant adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"),
        (0.10, "Malignant epidermal proliferations", "Squamous cell carcinoma, Invasive"),
    ),
    0: (
        (0.70, "Benign melanocytic proliferations", "Nevus"),
        (0.12, "Benign epidermal proliferations", "Seborrheic keratosis"),
        (0.06, "Benign epidermal proliferations", "Solar lentigo"),
        (0.06, "Benign soft tissue proliferations - Fibro-histiocytic", "Dermatofibroma"),
        (0.06, "Benign soft tissue proliferations - Vascular", "Hemangioma"),
    ),
}
#: Anatomical site (ISIC ``anatom_site_general``) per finest diagnosis: shares, summing to 1.
SITES_BY_DIAGNOSIS: dict[str, tuple[tuple[str, float], ...]] = {
    "Nevus": (("posterior torso", 0.33), ("anterior torso", 0.2), ("lower extremity", 0.2),
              ("upper extremity", 0.15), ("head/neck", 0.08), ("palms/soles", 0.04)),
    "Melanoma Invasive": (("posterior torso", 0.3), ("anterior torso", 0.12), ("lower extremity", 0.2),
                          ("upper extremity", 0.15), ("head/neck", 0.17), ("palms/soles", 0.06)),
    "Melanoma in situ": (("posterior torso", 0.25), ("anterior torso", 0.1), ("lower extremity", 0.15),
                         ("upper extremity", 0.15), ("head/neck", 0.3), ("palms/soles", 0.05)),
    "Basal cell carcinoma": (("head/neck", 0.65), ("posterior torso", 0.12), ("anterior torso", 0.12),
                             ("upper extremity", 0.06), ("lower extremity", 0.05)),
    "Squamous cell carcinoma, Invasive": (("head/neck", 0.5), ("upper extremity", 0.25),
                                          ("lower extremity", 0.15), ("anterior torso", 0.1)),
    "Seborrheic keratosis": (("posterior torso", 0.28), ("anterior torso", 0.22), ("head/neck", 0.3),
                             ("upper extremity", 0.1), ("lower extremity", 0.1)),
    "Solar lentigo": (("head/neck", 0.55), ("upper extremity", 0.35), ("anterior torso", 0.05),
                      ("posterior torso", 0.05)),
    "Dermatofibroma": (("lower extremity", 0.7), ("upper extremity", 0.2), ("anterior torso", 0.1)),
    "Hemangioma": (("anterior torso", 0.35), ("posterior torso", 0.3), ("upper extremity", 0.15),
                   ("head/neck", 0.1), ("lower extremity", 0.1)),
}  # fmt: skip
#: Sites where the demo's lesions are harder to tell apart (see the module docstring).
HARD_SITES = tuple(SITE_LOOKS)
SEX_P = (("male", 0.53), ("female", 0.45), ("", 0.02))
MISSING_AGE, MISSING_SITE = 0.015, 0.015


@dataclass
class Planned:
    """One image to write: which lesion, whether it is another view, its metadata row."""

    lesion: int
    view: bool
    row: dict[str, object]
    reupload_of: int = -1


def _draw_lesions(rng: np.random.Generator, n_images: int, label: int, views: bool) -> list[int]:
    """Images per lesion until ``n_images`` images of one class (the last lesion is cut to fit)."""
    counts: list[int] = []
    while sum(counts) < n_images:
        k = int(rng.choice(len(VIEWS_P), p=VIEWS_P)) + 1 if views else 1
        counts.append(min(k, n_images - sum(counts)))
    return counts


def _patients(rng: np.random.Generator, labels: list[int]) -> list[str]:
    """A patient id per lesion ('' for lesions without one); some patients have several lesions."""
    order = rng.permutation(len(labels))
    out = [""] * len(labels)
    pos, patient = 0, 0
    while pos < len(order):
        k = int(rng.choice(len(LESIONS_PER_PATIENT_P), p=LESIONS_PER_PATIENT_P)) + 1
        members = order[pos : pos + k]
        pos += k
        if rng.random() < SHARE_WITHOUT_PATIENT and k == 1:
            continue
        patient += 1
        for lesion in members:
            out[int(lesion)] = f"IP_{patient:07d}"
    return out


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float], ...]) -> str:
    shares = np.array([p for _, p in table])
    return table[int(rng.choice(len(table), p=shares / shares.sum()))][0]


def _patient_row(rng: np.random.Generator, malignant: bool) -> dict[str, object]:
    age = rng.normal(62, 13) if malignant else rng.normal(45, 15)
    return {
        "age_approx": "" if rng.random() < MISSING_AGE else int(np.clip(round(age / 5) * 5, 15, 85)),
        "sex": _choice(rng, SEX_P),
    }


def _diagnosis(rng: np.random.Generator, label: int) -> dict[str, object]:
    table = DIAGNOSES[label]
    shares = np.array([t[0] for t in table])
    _, d2, d3 = table[int(rng.choice(len(table), p=shares / shares.sum()))]
    return {"diagnosis_1": ("Benign", "Malignant")[label], "diagnosis_2": d2, "diagnosis_3": d3}


def _site(rng: np.random.Generator, diagnosis: str) -> str:
    site = _choice(rng, SITES_BY_DIAGNOSIS[diagnosis])
    return "" if rng.random() < MISSING_SITE else site


def plan(
    rng: np.random.Generator, n: int, n_mal: int, difficulty: float, views: bool
) -> tuple[list[Lesion], list[Planned]]:
    """Lesions (with their diagnosis, site and atypia) and the images to write, in a shuffled,
    ISIC-like order."""
    lesions: list[Lesion] = []
    lesion_views: list[int] = []
    diagnoses: list[dict[str, object]] = []
    for label, count in ((1, n_mal), (0, n - n_mal)):
        for k in _draw_lesions(rng, count, label, views):
            dx = _diagnosis(rng, label)
            site = _site(rng, str(dx["diagnosis_3"]))
            lesions.append(make_lesion(rng, label, difficulty, site))
            lesion_views.append(k)
            diagnoses.append({**dx, "anatom_site_general": site})
    patient_of = _patients(rng, [les.label for les in lesions]) if views else [""] * len(lesions)
    sick = {q for les, q in zip(lesions, patient_of, strict=True) if les.label}
    people = {p: _patient_row(rng, p in sick) for p in sorted(set(patient_of) - {""})}
    images: list[Planned] = []
    for i, (les, k) in enumerate(zip(lesions, lesion_views, strict=True)):
        person = people.get(patient_of[i]) or _patient_row(rng, bool(les.label))
        base = {
            "patient_id": patient_of[i],
            "lesion_id": f"IL_{i + 1:07d}" if views else "",
            **diagnoses[i],
            **person,
        }
        images += [Planned(i, j > 0, dict(base)) for j in range(k)]
    if views:
        _add_reuploads(rng, images, len(lesions))
    order = [int(i) for i in rng.permutation(len(images))]
    position = {old: new for new, old in enumerate(order)}
    shuffled = [images[i] for i in order]
    for p in shuffled:
        if p.reupload_of >= 0:
            p.reupload_of = position[p.reupload_of]
    return lesions, shuffled


def _add_reuploads(rng: np.random.Generator, images: list[Planned], n_lesions: int) -> None:
    """Turn ~1% of the images into re-uploads of another image of the same class, filed under a
    new lesion id with no patient: only the near-duplicate audit can tie them back."""
    n_re = round(len(images) * REUPLOAD_SHARE)
    targets = [int(t) for t in rng.choice(len(images), size=n_re, replace=False)]
    for k, target in enumerate(targets):
        same = [
            j
            for j, p in enumerate(images)
            if j not in targets and p.row["diagnosis_1"] == images[target].row["diagnosis_1"]
        ]
        source = int(rng.choice(same))
        images[target] = Planned(
            images[source].lesion,
            images[source].view,
            {**images[source].row, "lesion_id": f"IL_{n_lesions + k + 1:07d}", "patient_id": ""},
            reupload_of=source,
        )


def latent_auc(lesions: list[Lesion], planned: list[Planned]) -> float:
    """AUC of the latent atypia over the images written: what an ideal observer would score."""
    y = np.array([lesions[p.lesion].label for p in planned])
    s = np.array([lesions[p.lesion].atypia for p in planned])
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)
