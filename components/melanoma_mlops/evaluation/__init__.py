"""The evaluation layer: metrics, bootstrap CIs, threshold rules, plots, Grad-CAM, the model card."""
