"""The shipped model artifacts (installed as the data package ``hi_models``; see hi_runtime/artifacts.py).

This file exists so that a wheel carries the models: the folder is a package only for packaging."""
