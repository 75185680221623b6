"""The catalog sync's retrieval embedding of a new item with content neighbours: a new item with the content of
a trained item gets that item's learned embedding; its ranker features stay the content encoder's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from consumers.catalog_embed import ContentEmbedder
from streamrec import artifacts as art
from streamrec.archive import read_items


def test_a_new_item_with_a_trained_items_content_borrows_its_learned_embedding(catalog_export_root: Path) -> None:
    export_dir = art.current_dir(catalog_export_root)
    arrays = art.load_item_arrays(export_dir)
    ids = art.load_id_maps(export_dir).item_ids
    items = read_items(catalog_export_root.parent / "data").set_index("item_id")
    row = int(np.flatnonzero(arrays.popularity > 0)[0])
    source = items.loc[ids[row]]
    inputs = ([str(source["text"])], [int(arrays.category_idx[row])], [float(source["price"])], [None])

    [tower] = ContentEmbedder(export_dir).encode(*inputs)
    [borrowed] = ContentEmbedder(export_dir, neighbours=1).encode(*inputs)

    np.testing.assert_allclose(borrowed.embedding, arrays.embeddings[row], atol=1e-4)
    assert not np.allclose(tower.embedding, arrays.embeddings[row], atol=1e-2)  # content alone lands elsewhere
    for part in ("dense", "text", "image"):
        np.testing.assert_array_equal(getattr(borrowed, part), getattr(tower, part))
