"""The detection app's layer (the Streamlit page ``app/app.py`` is its layout only): ``logic`` vets an
upload, scores it through the champion's pyfunc and explains it with Grad-CAM; ``champion`` loads the
champion from the registry, pinned to its version, with its test metrics and their intervals.

It sits above the registry and serving: the app *reads* the registry (the alias, the version tags),
while the registry's gate scores through serving's pyfunc, so serving itself knows no registry.
"""
