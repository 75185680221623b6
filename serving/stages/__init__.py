"""Triton python-backend adapters: one module per stage, each exporting ``TritonPythonModel``.

The model repository's ``model.py`` files are shims that make this package importable inside the stub and
import the class from here; the logic lives in :mod:`serving.pipeline`.
"""
