"""One thin module per pipeline step: paths in, files out, MLflow side effects.

A step opens its nested MLflow run, reads its inputs, calls the library (data, model, evaluation,
registry), writes its outputs. The Kubeflow components (``melanoma_pipelines.components``) call
these functions and nothing else.
"""
