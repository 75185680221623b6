"""Named feature containers passed to the models, the training loops and (as one dict) the exported modules.

Shapes: B requests, N candidates per request, M items, P profile fields, R recent items, U user count
features, Q item dense features, T text and I image embedding widths. Index 0 is "unknown" / padding in every
table. The containers are NamedTuples because TorchScript compiles them as typed records (it cannot compile a
``@dataclass``'s generated ``__init__``); the exported modules take one ``Dict[str, Tensor]`` keyed by the
``streamrec.features.MODEL_*`` names instead, so that serving needs no trainer class to call them.

No ``from __future__ import annotations`` here: TorchScript needs the NamedTuple field types evaluated.
"""

from typing import NamedTuple

from torch import Tensor

from streamrec.features import (
    MODEL_CONTEXT_IDX,
    MODEL_ITEM_CATEGORY,
    MODEL_ITEM_DENSE,
    MODEL_ITEM_IDX,
    MODEL_ITEM_IMAGE,
    MODEL_ITEM_TEXT,
    MODEL_PROFILE_IDX,
    MODEL_RECENT_ITEMS,
    MODEL_USER_DENSE,
    MODEL_USER_IDX,
)


class UserFeatures(NamedTuple):
    """What the query side knows about B requests.

    user_idx Long[B]; profile_idx Long[B, P]; recent_items Long[B, R] (newest first, 0 = padding);
    context_idx Long[B, 3] (device, hour, weekday: ``streamrec.features.CONTEXT_FIELDS``).
    """

    user_idx: Tensor
    profile_idx: Tensor
    recent_items: Tensor
    context_idx: Tensor

    def to_dict(self) -> dict[str, Tensor]:
        return {
            MODEL_USER_IDX: self.user_idx,
            MODEL_PROFILE_IDX: self.profile_idx,
            MODEL_RECENT_ITEMS: self.recent_items,
            MODEL_CONTEXT_IDX: self.context_idx,
        }

    @classmethod
    def from_dict(cls, inputs: dict[str, Tensor]) -> "UserFeatures":
        return user_features_from_dict(inputs)


class ItemFeatures(NamedTuple):
    """Features of items with any leading shape S: [M] for the item tower, [B, N] for the ranker's candidates.

    item_idx Long[S]; item_cat Long[S]; item_dense Float[S, Q]; item_text Float[S, T]; item_image Float[S, I].
    """

    item_idx: Tensor
    item_cat: Tensor
    item_dense: Tensor
    item_text: Tensor
    item_image: Tensor

    def to_dict(self) -> dict[str, Tensor]:
        return {
            MODEL_ITEM_IDX: self.item_idx,
            MODEL_ITEM_CATEGORY: self.item_cat,
            MODEL_ITEM_DENSE: self.item_dense,
            MODEL_ITEM_TEXT: self.item_text,
            MODEL_ITEM_IMAGE: self.item_image,
        }

    @classmethod
    def from_dict(cls, inputs: dict[str, Tensor]) -> "ItemFeatures":
        return item_features_from_dict(inputs)


class RankerBatch(NamedTuple):
    """One ranker call: B requests with N candidates each.

    user: UserFeatures over B; user_dense Float[B, U] (raw counts, ``USER_COUNT_FEATURES`` order);
    candidates: ItemFeatures over [B, N].
    """

    user: UserFeatures
    user_dense: Tensor
    candidates: ItemFeatures

    def to_dict(self) -> dict[str, Tensor]:
        return {**self.user.to_dict(), MODEL_USER_DENSE: self.user_dense, **self.candidates.to_dict()}

    @classmethod
    def from_dict(cls, inputs: dict[str, Tensor]) -> "RankerBatch":
        return ranker_batch_from_dict(inputs)


# TorchScript reads no module-level str constants, so the three functions below spell the streamrec.features
# names as literals; tests check that they round-trip with the to_dict methods, which use the constants.
# A missing key fails inside the exported module as "KeyError: <name>".


def user_features_from_dict(inputs: dict[str, Tensor]) -> UserFeatures:
    return UserFeatures(
        user_idx=inputs["user_idx"],
        profile_idx=inputs["profile_idx"],
        recent_items=inputs["recent_items"],
        context_idx=inputs["context_idx"],
    )


def item_features_from_dict(inputs: dict[str, Tensor]) -> ItemFeatures:
    return ItemFeatures(
        item_idx=inputs["item_idx"],
        item_cat=inputs["item_cat"],
        item_dense=inputs["item_dense"],
        item_text=inputs["item_text"],
        item_image=inputs["item_image"],
    )


def ranker_batch_from_dict(inputs: dict[str, Tensor]) -> RankerBatch:
    return RankerBatch(
        user=user_features_from_dict(inputs),
        user_dense=inputs["user_dense"],
        candidates=item_features_from_dict(inputs),
    )
