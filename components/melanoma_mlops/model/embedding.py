"""The compact embedding of an image: the network's pooled features, projected on a few axes.

ResNet50's global-average-pooled features (2048 numbers at full size) are what the head decides
from, so a change in them is a change in what the model sees. Logging 2048 floats per prediction
would be heavy, and testing them one by one meaningless; a PCA fitted once, on the version's own
training images (the register step), keeps the directions in which that data varies most. The
projection is saved with the model (``projection.json``: plain numbers, no pickle to load at
serving time) and applied by the pyfunc to every image it scores and by the register step to the
reference images, so served and reference embeddings live in the same coordinates.

scikit-learn's PCA fits it (the well-kept implementation, deterministic with a seed); applying it
is one matrix product, so serving needs only NumPy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from melanoma_mlops.errors import ConfigError

if TYPE_CHECKING:
    import keras

#: Axes kept (fewer when the training set or the feature width is smaller).
DEFAULT_DIMS = 16
#: Training images whose features fit the PCA at most (a seeded sample beyond): 16 axes are well
#: estimated from 500 (about 30 images per axis), and the register step runs the network once on each
#: of them: a cost that should not grow with the training set.
FIT_MAX_IMAGES = 500
#: The classifier's pooling layer (model/network.py): its output is the pooled features.
POOLED_LAYER = "gap"
PROJECTION_FILE = "projection.json"
COLUMN_PREFIX = "emb_"


def embedding_columns(dims: int) -> list[str]:
    """``emb_00``, ``emb_01``, ...: the embedding's columns in the log and the reference profile."""
    return [f"{COLUMN_PREFIX}{i:02d}" for i in range(dims)]


def is_embedding_column(name: str) -> bool:
    return name.startswith(COLUMN_PREFIX) and name[len(COLUMN_PREFIX) :].isdigit()


@dataclass(frozen=True)
class EmbeddingProjection:
    """``(features - mean) @ components.T``, fitted on a version's training features."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: tuple[float, ...]
    n_fitted: int

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def columns(self) -> list[str]:
        return embedding_columns(self.dims)

    @property
    def explained_variance(self) -> float:
        """Share of the training features' variance the kept axes hold."""
        return float(sum(self.explained_variance_ratio))

    def apply(self, features: np.ndarray) -> np.ndarray:
        """(N, dims) embeddings of (N, width) pooled features; a ValueError on the wrong width."""
        x = np.asarray(features, np.float32).reshape(len(features), -1)
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features of width {x.shape[1]}; the projection was fitted on {self.mean.shape[0]}"
            )
        return (x - self.mean) @ self.components.T

    @classmethod
    def fit(cls, features: np.ndarray, dims: int = DEFAULT_DIMS, seed: int = 0) -> EmbeddingProjection:
        """A PCA of ``features`` keeping ``dims`` axes (at most what the data can give)."""
        from sklearn.decomposition import PCA

        x = np.asarray(features, np.float64).reshape(len(features), -1)
        if len(x) < 2:
            raise ConfigError(f"an embedding projection needs at least 2 training images; got {len(x)}")
        k = max(1, min(dims, x.shape[1], x.shape[0] - 1))
        pca = PCA(n_components=k, random_state=seed).fit(x)
        return cls(
            mean=pca.mean_.astype(np.float32),
            components=pca.components_.astype(np.float32),
            explained_variance_ratio=tuple(float(v) for v in pca.explained_variance_ratio_),
            n_fitted=int(x.shape[0]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "PCA of the global-average-pooled features (scikit-learn)",
            "dims": self.dims,
            "n_fitted": self.n_fitted,
            "explained_variance_ratio": list(self.explained_variance_ratio),
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingProjection:
        mean = np.asarray(data["mean"], np.float32)
        components = np.asarray(data["components"], np.float32)
        if mean.ndim != 1 or components.ndim != 2 or components.shape[1] != mean.shape[0]:
            raise ValueError(f"mean {mean.shape} and components {components.shape} do not fit together")
        return cls(
            mean=mean,
            components=components,
            explained_variance_ratio=tuple(float(v) for v in data.get("explained_variance_ratio", ())),
            n_fitted=int(data.get("n_fitted", 0)),
        )

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: Path | str) -> EmbeddingProjection:
        """Read ``projection.json``; a ConfigError naming the file when it is not one."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not an embedding projection ({exc}); re-register the model") from exc


def with_pooled_features(classifier: keras.Model) -> keras.Model | None:
    """The classifier with a second output, its pooled features: one forward pass gives the
    probability and what the embedding is made of. None when the model has no pooling layer of
    that name (not built by :func:`~melanoma_mlops.model.network.build_classifier`)."""
    import keras

    try:
        pooled = classifier.get_layer(POOLED_LAYER).output
    except ValueError:
        return None
    inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.inputs  # as it was built
    return keras.Model(inputs, [classifier.outputs[0], pooled], name=f"{classifier.name}_pooled")
