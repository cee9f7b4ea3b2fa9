"""The serving layer: the model contract, input vetting and decoding, the registered pyfunc. It knows
nothing of the registry (the registry's gate scores through it); the detection app that reads the
registry is :mod:`melanoma_mlops.app`, one layer up.
"""
