"""Fixtures the image smoke tests share with the serving tests: a real export trained on a small dataset."""

from tests.serving.conftest import data_root, export_root, serving_tmp  # noqa: F401
