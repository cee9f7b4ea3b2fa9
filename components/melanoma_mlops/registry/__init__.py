"""The registry layer: the pure promotion gate, scoring registered versions, champion moves with
their audit trail, and the guard that keeps the leaky control out. No TensorFlow import at module
level: moving an alias must be quick.
"""
