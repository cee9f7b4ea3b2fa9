"""The ablation: two-stage vs single-stage fine-tuning over seeds, with the paper's leak as a control.

What it answers. arXiv 2606.17504 reports test AUC 0.9559 for two-stage ResNet50 fine-tuning (Stage 1:
head only on a frozen base; Stage 2: every layer at lr 1e-5). Two questions decide whether that
number means anything:

1. Does the two-stage schedule beat the obvious baseline, **single-stage** fine-tuning (every layer
   trainable from the first epoch, one learning rate), on the same data? Each seed fixes the split,
   the oversampling, the augmentation and the weight initialisation; both variants see the same
   split for a given seed, so the comparison is *paired* by seed and the seed-to-seed spread is
   shown next to the mean.
2. How much of the published number is the leak? The paper oversampled the whole data set to 1:1
   *before* splitting, so copies of one malignant image sat in train and test. The ``leaky`` protocol
   reproduces exactly that (:mod:`melanoma_mlops.experiments.ablation.leaky`) as a **negative
   control**, labelled ``LEAKY (negative control)`` everywhere, tagged ``leaky=true`` in MLflow and
   never registrable (:mod:`melanoma_mlops.registry.guard`). Its report counts the test images that have a
   copy in its training set; the honest arms are counted the same way on their real splits (0).

Vocabulary. A *variant* is a training schedule (``two_stage`` | ``single_stage``); a *protocol* is
the data preparation (``honest``: grouped split, then oversample train only | ``leaky``); an *arm*
is one (protocol, variant) pair; a *trial* is one arm at one seed, written ``protocol:variant:seed``
(e.g. ``honest:two_stage:0``) -- plain strings because that is what a KFP ``ParallelFor`` can
iterate over and branch on, locally and on a cluster.

MLflow layout (experiment ``melanoma-ablation``)::

    ablation parent run            comparison table (Markdown/CSV/JSON), summary metrics
      |- validate                  (the shared data validation)
      |- two_stage seed=0          one run per trial: tags arm/variant/protocol/seed/leaky
      |    |- split, oversample, stage1, stage2, evaluate, summarize
      |- LEAKY (negative control) two_stage seed=0
           |- leaky_split, stage1, stage2, evaluate, summarize      (every run tagged leaky=true)

Modules: ``design`` (arms, trials, parsing), ``leaky`` (the negative control's data preparation),
``stats`` (the comparison maths and the leak counts, pure and tested on hand-made numbers),
``comparison_md`` (the comparison, and a trial's line, as a reviewer reads them), ``report`` (the
files: Markdown, CSV, JSON, the plot, a trial's summary; the run's summary metrics), ``runs`` (the
MLflow runs above: the experiments, the parent, the trials, the leaky tag), ``document``
(docs/ablation.md around a run's results). The pipeline steps that use them are in
:mod:`melanoma_mlops.steps.ablation`.
"""
