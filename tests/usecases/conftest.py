"""Use-case clips with known answers, made and analysed once per test session (hold-out voices, seeds that
fitting never used)."""
from __future__ import annotations

import pytest

TEST_SEED = 900_000


@pytest.fixture(scope="session")
def engine():
    import edge_sync

    return edge_sync.load()


@pytest.fixture(scope="session")
def desync_clips(tmp_path_factory):
    from edge_sync.data.scenes import DESYNC_KINDS, make_desync_clip

    root = tmp_path_factory.mktemp("desync")
    return {kind: make_desync_clip(root / f"{kind}.mp4", kind, TEST_SEED, split="holdout") for kind in DESYNC_KINDS}


@pytest.fixture(scope="session")
def desync_synced(engine, desync_clips):
    return {kind: engine.sync_file(clip.path) for kind, clip in desync_clips.items()}


@pytest.fixture(scope="session")
def speakers_clip(tmp_path_factory):
    from edge_sync.data.scenes import make_speakers_clip

    return make_speakers_clip(tmp_path_factory.mktemp("speakers") / "two.mp4", TEST_SEED, split="holdout", turns=2)


@pytest.fixture(scope="session")
def speakers_synced(engine, speakers_clip):
    return engine.sync_file(speakers_clip.path)


@pytest.fixture
def strict_heads(engine):
    """The bundled student's heads with an evidence floor over any LSE-C (which is in [0, 2]): every reading is
    under it, so every verdict they give is "unsure"."""
    import dataclasses

    from edge_sync.usecases.heads import heads_for

    return dataclasses.replace(heads_for(engine.manifest), evidence_floor=2.0)


@pytest.fixture
def strict_heads_installed(strict_heads, tmp_path, monkeypatch):
    """``strict_heads`` where every artifact of the bundled student finds its heads (a HEADS_DIR of the test's)."""
    from edge_sync.usecases import heads as heads_mod

    monkeypatch.setattr(heads_mod, "HEADS_DIR", tmp_path / "heads")
    strict_heads.write(heads_mod.heads_path(strict_heads.checkpoint_sha256))
    return strict_heads
