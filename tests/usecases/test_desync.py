"""Desync flag on hold-out clips: genuine passes, every manipulation is flagged and explained."""
from __future__ import annotations

import pytest

from edge_sync.data.scenes import DESYNC_KINDS
from edge_sync.usecases.desync import flag_sync
from edge_sync.usecases.heads import heads_for


@pytest.mark.parametrize("kind", DESYNC_KINDS)
def test_flags_follow_the_manipulation(engine, desync_synced, kind) -> None:
    flag = flag_sync(desync_synced[kind], heads_for(engine.manifest))
    assert flag.probability is not None
    assert flag.flagged == (kind != "genuine"), flag.to_dict()
    assert bool(flag.reasons) == flag.flagged


def test_without_a_head_the_rules_still_catch_a_shift(desync_synced) -> None:
    flag = flag_sync(desync_synced["shifted"], None)
    assert flag.flagged and flag.probability is None and "constant offset" in flag.reasons[0]
    assert not flag_sync(desync_synced["genuine"], None).flagged
