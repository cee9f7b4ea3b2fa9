"""Why the leaky protocol inflates test AUC only for a model that memorises.

On the demo set, honest vs leaky splits of the same seeds (the pipeline's own split, oversampling and
`paper_leaky_split`), one head on the frozen random-init ResNet50 features that Stage 1 trains on
(64 px): a regularised logistic regression (C=0.01) and one that memorises its training set
(C=1e4). Prints, per head, the training and test AUC and the paired leaky − honest difference with
its 95% Student-t interval. The demo pipeline's own models memorise even less than the first head
(their AUC on their training images is no higher than on unseen ones), which is why `melanoma-mlops ablation`
shows no inflation on the demo; see docs/leak.md.
"""

from __future__ import annotations

import argparse
import tempfile

import _common  # noqa: F401  (quiet TensorFlow)
import keras
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from melanoma_mlops.data import demo
from melanoma_mlops.data.oversample import oversample_train
from melanoma_mlops.data.split import split_manifest
from melanoma_mlops.data.validation import validate
from melanoma_mlops.experiments.ablation.leaky import paper_leaky_split
from melanoma_mlops.experiments.ablation.stats import paired_interval
from melanoma_mlops.model import dataset, network

HEADS = {"regularised (C=0.01)": 0.01, "memorising (C=1e4)": 1e4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--difficulty", type=float, default=demo.DEFAULT_DIFFICULTY)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo.generate(tmp, n=args.images, difficulty=args.difficulty)
        m = validate(tmp, 32, f"{tmp}/docs").manifest.drop(columns=["split"])
        keras.utils.set_random_seed(0)
        clf = network.build_classifier(64, "none", 0.5)
        features = keras.Model(clf.input, clf.get_layer("gap").output)
        x = features.predict(dataset.make_dataset(m, 64, 64), verbose=0)
    row = {u: i for i, u in enumerate(m["image_uri"])}
    print(f"{args.images} demo images (difficulty {args.difficulty}), seeds 0..{args.seeds - 1}")
    for name, c in HEADS.items():
        figures: dict[str, list[float]] = {"train": [], "honest": [], "leaky": []}
        for seed in range(args.seeds):
            split = split_manifest(m, 0.15, 0.15, seed)
            honest = (oversample_train(split[split["split"] == "train"].reset_index(drop=True), seed),
                      split[split["split"] == "test"])  # fmt: skip
            leaky_train, _, leaky_test = paper_leaky_split(m, 0.15, 0.15, seed)
            for arm, (train, test) in (("honest", honest), ("leaky", (leaky_train, leaky_test))):
                xa, xb = x[[row[u] for u in train["image_uri"]]], x[[row[u] for u in test["image_uri"]]]
                head = LogisticRegression(C=c, max_iter=5000).fit(xa, train["label"])
                figures[arm].append(roc_auc_score(test["label"], head.decision_function(xb)))
                if arm == "honest":
                    figures["train"].append(roc_auc_score(train["label"], head.decision_function(xa)))
        diff = paired_interval(np.subtract(figures["leaky"], figures["honest"]), bound=1.0)
        print(
            f"  head {name:<21} train AUC {np.mean(figures['train']):.3f}, honest test AUC "
            f"{np.mean(figures['honest']):.3f}, leaky test AUC {np.mean(figures['leaky']):.3f}; "
            f"leaky − honest {diff.mean:+.3f} (95% CI {diff.ci_low:+.3f}, {diff.ci_high:+.3f})"
        )


if __name__ == "__main__":
    main()
