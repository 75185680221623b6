"""The catalog: items and user profiles as a live input (contract, last-writer-wins state, import, snapshots)."""

from streamrec.catalog.codec import CatalogKind, decode_message, decode_record, validate_item, validate_user
from streamrec.catalog.models import CatalogItem, ItemTombstone, UserProfile, UserTombstone
from streamrec.catalog.state import CatalogState, reduce_records

__all__ = [
    "CatalogItem",
    "CatalogKind",
    "CatalogState",
    "ItemTombstone",
    "UserProfile",
    "UserTombstone",
    "decode_message",
    "decode_record",
    "reduce_records",
    "validate_item",
    "validate_user",
]
