"""The biopsy results of a generated demo set, as the CSV ``melanoma-mlops outcomes`` reads.

Real outcomes come back from pathology weeks after a prediction; the demo's lesions have their true
labels from the generator, so ``demo-data --outcomes FILE`` writes them, keyed by the sha256 of each
image's bytes (what the prediction log records as ``image_sha256`` for an image sent as it is on
disk). That closes the monitoring loop on the demo without a hand-made file. The set is read back
through its own data source (:func:`~melanoma_mlops.data.sources.reader.load_source`), so the labels
are the ones training and evaluation read, and masks or marker files are never listed.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

from melanoma_mlops import storage
from melanoma_mlops.artifacts import TASK_CLASSES
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

#: The columns written: the image (for a reader), its hash (the join key) and the biopsy result.
COLUMNS = ("image", "sha256", "label")


def write(data_dir: str | Path, path: str | Path) -> int:
    """Write the outcomes of every image of ``data_dir`` to ``path``; the number of rows written.

    Byte-identical images (a re-upload copied byte for byte) share a hash and are one row: the
    outcomes command refuses a hash listed twice, and both copies have the same lesion's label.
    """
    source = load_source(str(data_dir))
    names = TASK_CLASSES[source.task]
    rows: dict[str, dict[str, str]] = {}
    for uri, label in zip(source.manifest["image_uri"], source.manifest["label"], strict=True):
        digest = hashlib.sha256(storage.read_bytes(str(uri))).hexdigest()
        name = names[int(label)]
        if digest in rows and rows[digest]["label"] != name:  # the generator never does this
            raise DataError(f"{uri}: the same bytes as {rows[digest]['image']} with another label")
        rows.setdefault(digest, {"image": str(uri), "sha256": digest, "label": name})
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows.values())
    logger.debug("wrote the outcomes of %d images of %s to %s", len(rows), data_dir, out)
    return len(rows)
