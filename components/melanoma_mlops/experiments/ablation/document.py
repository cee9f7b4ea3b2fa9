# ruff: noqa: E501  (Markdown tables and diagrams: their lines are as long as the document needs)
"""The ablation's document (``docs/ablation.md``): what the ablation asks and how to read it, around
the results of one real run, written by ``melanoma-mlops ablation --report-dir DIR`` itself.

The prose here says how the ablation works; every number in the document comes from the run
(the comparison Markdown and the plot its compare step wrote), never typed by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

from melanoma_mlops.artifacts import ABLATION_PLOT_PNG, LEAKY_LABEL

#: The document's file name in ``--report-dir``; the run's files sit in ``<report-dir>/ablation/``.
DOCUMENT_MD = "ablation.md"

INTRO = f"""\
# The ablation: does the two-stage schedule matter, and how much of the published number is the leak?

The protocol we reproduce (arXiv 2606.17504) reports a test AUC of 0.9559 for two-stage ResNet50
fine-tuning: Stage 1 trains the head on a frozen base, Stage 2 fine-tunes every layer at lr 1e-5.
`melanoma-mlops ablation` asks two questions of that claim on *your* data:

1. **Does the schedule beat the obvious baseline?** The baseline is *single-stage* fine-tuning: the
   same classifier with every layer trainable from the first epoch, at one learning rate.
2. **How much of the published number is the leak?** The paper oversampled the whole data set to 1:1
   *before* splitting, so copies of the same malignant image sat in train and test. The `leaky`
   protocol reproduces that mistake as a **{LEAKY_LABEL}** and counts the copies, and the test
   images that share a lesion or patient with a training image.

Nothing the ablation trains is ever registered: its pipeline has no register step, and every run of
the leaky control is tagged `leaky=true`, which `melanoma_mlops.registry.guard.assert_registrable`
refuses.
"""

METHOD = f"""\
## What is compared

| term | values | meaning |
|---|---|---|
| variant | `two_stage` | Stage 1 (head, base frozen, `--stage1-lr`) then Stage 2 (all layers, `--stage2-lr`) — the main pipeline's own steps |
| | `single_stage` | all layers trainable from epoch one at `--single-stage-lr` (default 1e-4) for `--single-stage-epochs` (default stage1 + stage2 epochs, the same budget) |
| protocol | `honest` | the main pipeline's data preparation: split grouped by patient / lesion / duplicate cluster and stratified, then oversample the training split only, then the leakage check |
| | `leaky` | the paper's: oversample the whole validated manifest to 1:1, then a plain stratified row split (`experiments/ablation/leaky.py`); no leakage check — the leak is what it measures |
| seed | `--seeds 0,1,2` | each seed fixes the split, the oversampling, augmentation and weight initialisation |

An *arm* is a (protocol, variant) pair; a *trial* is one arm at one seed. For a given seed both
variants see exactly the same split and oversampled training set, so their difference is a **paired**
comparison that isolates the training schedule. Everything else is identical between variants:
architecture, weights, dropout, augmentation, early stopping on validation AUC, BatchNorm kept in
inference mode (`--bn-inference`), precision/XLA switches, and the evaluation (threshold frozen on
validation by `--threshold-rule`, then test metrics).

**Why single-stage lr 1e-4.** With every layer trainable from the start, the randomly initialised
head sends large, noisy gradients into the pretrained base. The Stage 1 rate (1e-3) lets them wreck
the ImageNet features early; the Stage 2 rate (1e-5) is too small to train a random head within the
epoch budget. 1e-4 — one decade below the head rate, one above the fine-tuning rate — is the usual
Adam rate for end-to-end ResNet50 fine-tuning. It is a prior, not a tuned value: rerun with
`--single-stage-lr 1e-5` and `1e-3` before concluding that the two-stage schedule is better.

## How to run it

Locally (the same KFP pipeline a cluster runs, executed by `kfp.local`; MLflow in `./mlruns`):

```bash
melanoma-mlops ablation --data /path/to/data --seeds 0,1,2                   # honest, both variants
melanoma-mlops ablation --data /path/to/data --seeds 0,1,2 --protocol both   # + the leaky control
melanoma-mlops ablation --protocol both --seeds 0,1,2 --report-dir docs      # demo data; writes this file
```

Useful options: `--variants two_stage,single_stage`, `--protocol honest|leaky|both`,
`--single-stage-lr`, `--single-stage-epochs`, `--run-name`, `--report-dir` (default
`ablation_report/`: the run's files go to `<dir>/ablation/`, this document to `<dir>/{DOCUMENT_MD}`),
`--parallelism 1|2` (trials trained at once locally; 1 by default because one TensorFlow process
already uses every core) and every training option of `melanoma-mlops run` (`--image-size`,
`--stage1-epochs`, `--weights`, ...). Without `--data` the demo set and the demo preset apply, as
for `run`. `--seed` is ignored: seeds come from `--seeds`.

Cost: a trial costs what one run of the main pipeline costs without Grad-CAM and registration; the
trials run one or two at a time, so budget (number of trials) × (one main-pipeline run).

On a cluster, compile the pipeline and submit it like the main one:

```bash
melanoma-mlops ablation --compile ablation.yaml --data s3://bucket/isic --seeds 0,1,2,3,4 \\
    --protocol both --parallelism 4 --gpus 1 --image registry.example/melanoma-mlops/pipeline:0.1.0
# writes ablation.yaml (KFP IR) and ablation.arguments.json (the run's arguments)
```

## The pipeline

```
validate ─► start_ablation ─► ParallelFor(trial in trials) ─────────────────────────────────► compare
                                start_trial ─► If arm == honest:two_stage                        (dsl.Collected)
                                                  split ► oversample ► stage1 ► stage2 ► evaluate ► summarize
                                               Elif honest:single_stage
                                                  split ► oversample ► single_stage ► evaluate ► summarize
                                               Elif leaky:two_stage      {LEAKY_LABEL}
                                                  leaky_split ► stage1 ► stage2 ► evaluate ► summarize
                                               Else leaky:single_stage   {LEAKY_LABEL}
                                                  leaky_split ► single_stage ► evaluate ► summarize
                                             ─► finish_trial(dsl.OneOf(summaries))
```

`validate`, `split`, `oversample`, `stage1`, `stage2` and `evaluate` are the main pipeline's own
components; the ablation adds only its bookkeeping steps (`melanoma_mlops/steps/ablation.py`).
Trials are plain strings `protocol:variant:seed` (e.g. `honest:two_stage:0`), the pipeline parameter
`trials`. Under `kfp.local` (kfp 2.17) three limitations shaped it, each verified by experiment: a
condition on a field of a dict loop item cannot be resolved, so loop items are strings and the branch
reads `start_trial`'s output; `dsl.OneOf` of artifacts fails while `dsl.OneOf` of parameters works,
so each branch runs down to its own summary; and a task-output *parameter* feeding a ParallelFor is
replaced by the loop item, so the ablation's run id enters the loop as a small artifact.

## Reading the report

The compare step writes `comparison.md` (the results above), `comparison.csv` (long format:
section, name, metric, n, mean, sd, ci_low, ci_high, per-seed values), `comparison.json`,
`trials.csv` (one row per trial) and `{ABLATION_PLOT_PNG}`, logs them under `ablation/` on the MLflow
parent run (experiment `melanoma-ablation`; the Markdown is also the run's description) and shows the
Markdown in the KFP UI. Sections:

- **Headline**: test AUC honest vs leaky per variant, the paired difference leaky − honest per seed
  with its 95% Student-t interval, and the share of the leaky test rows that had a copy of themselves
  in training, or a copy *or another image of the same lesion or patient* (what a grouped split
  keeps apart). An interval that excludes 0 shows an inflation; one that includes 0 does not.
- **Per arm**: mean ± sample sd (ddof 1) over seeds of each test metric — AUC-ROC, average precision
  (`pr_auc`), ISIC pAUC above 80 % TPR (`pauc_80`, range 0–0.2), balanced accuracy, sensitivity,
  specificity, F1 at the frozen threshold, and expected calibration error (`ece`, lower is better).
  The sd is the seed-to-seed spread: differences between arms smaller than it are noise.
- **Paired differences two_stage − single_stage** (per protocol that has both): the difference at each
  seed, its mean, a 95 % Student-t interval (mean ± t(0.975, n−1)·sd/√n, clipped to the largest
  possible difference), and in how many seeds two_stage was better. With few seeds the interval is
  wide on purpose: t(0.975, 2) = 4.30.
- **Leak inflation: {LEAKY_LABEL} − honest** (per variant): what oversample-then-split adds to each
  metric, seed by seed. The two arms are scored on *different* test sets — the leaky one contains
  copies of training images — which is exactly the published mistake. The leaky test set is also
  balanced 1:1 by the oversampling, so prevalence-dependent metrics (`pr_auc`, precision, `f1`) rise
  with the malignant share alone; AUC-ROC, sensitivity and specificity do not depend on prevalence
  and isolate the copy effect.
- **Leak count per trial**: test rows whose exact bytes (sha256) are in that trial's training
  manifest, and those with a copy or a same-lesion/patient/duplicate-cluster image there, computed by
  the same code on every trial's real split: the honest trials read 0 (their leakage check would have
  stopped them otherwise); the leaky ones are positive.

## Why the leak inflates, and when it would not

Oversampling before splitting repeats each malignant image several times and then scatters the
copies over train, validation and test. With a 1:4 class ratio, roughly three quarters of the
malignant rows are copies, and a row split sends most of them to a set that also holds another copy;
on data with several images per lesion (HAM10000, the ISIC Archive, the demo) a row split also puts
other views of the same lesion on both sides, for benign lesions too. A network that has seen those
images scores them like its training images, so the leaky arm's AUC and sensitivity rise for the
wrong reason, and the threshold chosen on the equally contaminated validation set looks better than
it is. The inflation is largest for a network that *memorises* — many epochs, a high-capacity model,
pretrained features — and smallest for one that barely fits its training set; a short budget on
small images (the demo's) therefore shows a lower bound of what the published protocol adds. The
leaky arm's figures are **not results**: they exist to be subtracted.

## MLflow layout

```
experiment melanoma-ablation
  <run name>                       parent: params, comparison metrics, ablation/ artifacts, tags
    validate                         pipeline=ablation, ablation.arms, ablation.seeds, ...
    two_stage seed=0               one run per trial: tags ablation.arm/variant/protocol/seed,
      split, oversample, stage1,     leaky=false; test/* metrics, leak/* counts
      stage2, evaluate, summarize
    {LEAKY_LABEL} two_stage seed=0        leaky=true on the trial and every step run
      leaky_split, stage1, stage2, evaluate, summarize
```

Filter with `tags.leaky = 'true'` to see the control, `tags.pipeline = 'ablation'` for the parents.
Parent metrics are named `<protocol>.<variant>/<metric>_mean|_sd` and
`paired.honest.two_stage-minus-honest.single_stage/<metric>_mean|_ci_low|_ci_high`
(`leak_inflation.leaky.<v>-minus-honest.<v>/...` for the control).

## Limits

- Few seeds give wide intervals; five or more are needed before a difference of a few AUC points
  means anything. The seed varies split, oversampling, augmentation and initialisation together, so
  the spread is the total run-to-run variability, not any one source.
- The single-stage learning rate is a prior (see above); sweep it.
- The comparison uses the test set of each seed's split. Hyperparameters chosen by looking at these
  tables would turn the test set into a validation set; pick them elsewhere.
"""


def _demote(markdown: str) -> str:
    """The comparison's headings one level down, under this document's ``## Results``."""
    out = []
    for line in markdown.splitlines():
        out.append("#" + line if line.startswith("#") else line)
    return "\n".join(out).strip() + "\n"


def render_document(comparison_markdown: str, provenance: Mapping[str, str]) -> str:
    """The whole document: the introduction, this run's results (``comparison_markdown``, written
    by the compare step) with the plot, then how the ablation works. ``provenance``: how the
    results were made (command, machine, wall time, ...), shown first."""
    made = "\n".join(f"- {k}: {v}" for k, v in provenance.items())
    return (
        f"{INTRO}\n"
        "## Results of the run below\n\n"
        "> Written by the command itself (`melanoma-mlops ablation --report-dir ...`): every figure in "
        "this section comes from that run; do not edit it by hand, rerun the command.\n\n"
        f"{made}\n\n"
        f"![Test AUC per arm and seed](ablation/{ABLATION_PLOT_PNG})\n\n"
        f"{_demote(comparison_markdown)}\n"
        f"{METHOD}"
    )
