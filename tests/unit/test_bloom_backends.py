"""Bloom backends build the right commands; the bitmap fallback hashes exactly like pybloom-live."""

from __future__ import annotations

from pybloom_live import BloomFilter

from streamrec.bloom import BitmapBloomBackend, RedisBloomBackend, choose_backend
from streamrec.bloom.bitmap import filter_geometry
from streamrec.bloom.store import module_names
from streamrec.settings import BloomSettings

SETTINGS = BloomSettings(capacity=1000, error_rate=0.01, ttl_seconds=3600)


def test_keys_are_hash_tagged_per_user() -> None:
    assert RedisBloomBackend(SETTINGS).key("u-1") == "bf:seen:{u-1}"


def test_redisbloom_insert_reserves_with_settings_and_refreshes_ttl() -> None:
    cmds = RedisBloomBackend(SETTINGS).add_commands("u", ["a", "b"])
    assert cmds[0] == ("BF.INSERT", "bf:seen:{u}", "CAPACITY", 1000, "ERROR", 0.01, "ITEMS", "a", "b")
    assert cmds[1] == ("EXPIRE", "bf:seen:{u}", 3600)
    assert RedisBloomBackend(SETTINGS).check_command("u", ["a"]) == ("BF.MEXISTS", "bf:seen:{u}", "a")


def test_bitmap_positions_equal_pybloom_live_bits() -> None:
    backend = BitmapBloomBackend(SETTINGS)
    reference = BloomFilter(capacity=1000, error_rate=0.01)
    assert (backend.slices, backend.bits_per_slice) == (reference.num_slices, reference.bits_per_slice)
    for item in ("item-1", "item-2", "ünï"):
        reference.add(item)
    set_bits = {i for i, bit in enumerate(reference.bitarray) if bit}
    ours = {p for item in ("item-1", "item-2", "ünï") for p in backend.positions(item)}
    assert ours == set_bits


def test_bitmap_geometry_matches_capacity_and_error() -> None:
    slices, bits = filter_geometry(1000, 0.01)
    assert slices == 7 and bits * slices > 9000


def test_backend_choice_probes_modules() -> None:
    assert isinstance(choose_backend(SETTINGS, {"bf", "lua"}), RedisBloomBackend)
    assert isinstance(choose_backend(SETTINGS, {"lua"}), BitmapBloomBackend)
    forced = BloomSettings(backend="bitmap")
    assert isinstance(choose_backend(forced, {"bf"}), BitmapBloomBackend)


def test_module_list_reply_parsing_handles_resp2_and_resp3() -> None:
    resp2 = [[b"name", b"bf", b"ver", 20802], [b"name", b"lua", b"ver", 1]]
    resp3 = [{b"name": b"bf", b"ver": 20802}]
    assert module_names(resp2) == {"bf", "lua"}
    assert module_names(resp3) == {"bf"}
