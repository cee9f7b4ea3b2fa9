"""Which of two (or more) pipeline runs is better, and can they be told apart at all?

``melanoma-mlops compare RUN RUN ...`` reads the parent runs of the main pipeline and answers in one
table: the settings that differ, the headline test metrics with their 95% intervals side by side,
and -- where the runs were tested on the same images -- the *paired* difference of every metric with
its 95% interval (both models re-scored on the same resampled lesion/patient groups:
:func:`melanoma_mlops.evaluation.bootstrap.paired_differences`, the statistics the promotion gate
uses), then a one-line verdict per run.

Modules: ``comparison`` (pure: runs in, the comparison out; tested on numbers), ``render`` (the
comparison as console text, HTML and JSON), ``records`` (MLflow: finding the runs, reading their
metrics and predictions, logging the HTML on the newest run).
"""
