"""The data layer: sources (one module per layout), image inspection, hashing, duplicates, the Great
Expectations suite, the grouped split, oversampling of train only, and the leakage check.

Nothing here trains or tracks: every function takes and returns manifests (DataFrames) or files.
"""
