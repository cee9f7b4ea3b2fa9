"""The serving layer: the model contract, input vetting and decoding, the registered pyfunc, and the
detection app's logic.
"""
