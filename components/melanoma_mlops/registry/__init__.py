"""The registry layer: the pure promotion gate, scoring registered versions, the gate's decision as a
record (its JSON, tags and metrics), champion moves (the moves, their lock, their record and the
per-version audit tags), the gate's report and the guard that keeps the leaky control out. No
TensorFlow import at module level: moving an alias must be quick.
"""
