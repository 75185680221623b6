"""Read one export version (see :mod:`streamrec.artifacts`), each part loaded only when a stage asks for it."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import artifacts as art
from streamrec.errors import ArtifactError


class ExportReader:
    """Lazy, cached access to the files of ``<export_root>/versions/<version>``."""

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        self.directory = Path(directory)
        self.device = device

    @classmethod
    def current(cls, export_root: Path, device: str = "cpu") -> ExportReader:
        return cls(art.current_dir(export_root), device)

    @cached_property
    def metadata(self) -> art.ExportMetadata:
        return art.load_metadata(self.directory)

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def spec(self) -> art.FeatureSpec:
        return self.metadata.feature_spec

    @cached_property
    def id_maps(self) -> art.IdMaps:
        return art.load_id_maps(self.directory, self.metadata)

    @cached_property
    def item_index(self) -> dict[str, int]:
        return self.id_maps.item_index()

    @cached_property
    def user_index(self) -> dict[str, int]:
        return self.id_maps.user_index()

    @cached_property
    def items(self) -> art.ItemArrays:
        return art.load_item_arrays(self.directory, self.metadata)

    @cached_property
    def profiles(self) -> np.ndarray:
        """int64 [n_users + 1, P]; row 0 (anonymous / unknown) is zeros."""
        rows = art.load_user_profiles(self.directory, self.metadata)
        return np.vstack([np.zeros((1, rows.shape[1]), dtype=np.int64), rows])

    def _torchscript(self, name: str) -> Any:
        import torch

        model = self.metadata.models.get(name)
        if model is None:
            raise ArtifactError(f"export {self.version} has no {name} model")
        try:
            module = torch.jit.load(str(self.directory / model.file), map_location=self.device)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ArtifactError(f"cannot load {self.directory / model.file}: {str(exc).splitlines()[0]}") from None
        return module.eval()

    @cached_property
    def query_tower(self) -> Any:
        return self._torchscript("query_tower")

    @cached_property
    def ranker(self) -> Any:
        return self._torchscript("ranker")

    @cached_property
    def faiss_index(self) -> Any:
        import faiss

        path = self.directory / self.metadata.index.file
        try:
            return faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ArtifactError(f"cannot read FAISS index {path}: {str(exc).splitlines()[0]}") from None
