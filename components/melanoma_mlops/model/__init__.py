"""The model layer: the ResNet50 classifier, the tf.data input pipeline, precision switches, and the
training schedules (stage1, stage2, single_stage) over one training helper. No MLflow here.
"""
