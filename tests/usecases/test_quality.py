"""Sync-quality scores: syncnet_python's arithmetic, the calibrated verdict, and the original model's own."""
from __future__ import annotations

import pytest
import torch

from edge_sync.usecases.heads import heads_for
from edge_sync.usecases.quality import LEGACY_SCALE, UNIT_SCALE, score_legacy_checkpoint, score_sync


def test_scores_are_the_results_min_dist_and_confidence(engine, desync_synced) -> None:
    sync = desync_synced["genuine"]
    score = score_sync(sync)
    assert score.lse_d == sync.main.result.min_dist and score.lse_c == sync.main.result.confidence
    assert 0.0 <= score.lse_d <= 2.0 and score.scale == UNIT_SCALE
    assert score.sync_probability is None  # no heads given: raw scores only


def test_in_sync_and_shifted_clips_get_opposite_verdicts(engine, desync_synced) -> None:
    heads = heads_for(engine.manifest)
    good, bad = score_sync(desync_synced["genuine"], heads), score_sync(desync_synced["shifted"], heads)
    assert good.in_sync is True and bad.in_sync is False
    assert good.sync_probability > bad.sync_probability
    # LSE-C/LSE-D are read at the best offset, so a cleanly shifted clip scores like an in-sync one: only the
    # offset (and so the calibrated probability) tells them apart -- what the module docstring warns about
    assert abs(bad.offset_frames) > 1 and good.offset_frames == 0


def test_an_original_syncnet_checkpoint_gives_syncnet_python_scores(tmp_path, desync_clips) -> None:
    from edge_sync.features.clip import prepare_clip
    from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
    from edge_sync.spec import LEGACY_FACE

    torch.manual_seed(0)
    torch.save(SyncNetS().state_dict(), tmp_path / "syncnet_v2.model")  # the public checkpoint format
    clip = desync_clips["genuine"].path
    score = score_legacy_checkpoint(tmp_path / "syncnet_v2.model", clip)
    seg = prepare_clip(clip, LEGACY_FACE).main_segment()
    model = LegacySyncNetFCN.from_checkpoint(tmp_path / "syncnet_v2.model").eval()
    ref = model.offsets(torch.from_numpy(seg.audio), torch.from_numpy(seg.video))
    assert score.scale == LEGACY_SCALE and score.frames == seg.frames
    assert score.lse_d == pytest.approx(ref.min_dist) and score.lse_c == pytest.approx(ref.confidence)
    assert score.offset_frames == ref.offset_frames


def test_a_reading_under_the_evidence_floor_gets_no_verdict(engine, desync_synced) -> None:
    """A model that cannot read a face answers with little LSE-C: under the floor fitted for it, score gives no
    verdict instead of calling an in-sync clip out of sync; above it, the verdict stands."""
    import dataclasses

    heads = heads_for(engine.manifest)
    sync = desync_synced["genuine"]
    lse_c = score_sync(sync).lse_c
    above = score_sync(sync, dataclasses.replace(heads, evidence_floor=lse_c - 1e-3))
    assert above.in_sync is True and not above.low_evidence
    under = score_sync(sync, dataclasses.replace(heads, evidence_floor=lse_c + 1e-3))
    assert under.in_sync is None and under.low_evidence
    assert under.sync_probability == above.sync_probability  # the head's p stays, as a hint
    assert any("too little sync evidence" in w for w in under.warnings)
    assert under.to_dict()["low_evidence"] is True
    # the score judges by the heads it is given, not by the floor the runtime read beside the model
    flagged = dataclasses.replace(sync, evidence_floor=lse_c + 1e-3)
    assert flagged.low_evidence and any(w.startswith("UNSURE:") for w in flagged.warnings)
    judged = score_sync(flagged, heads)  # the bundled heads: their floor is under this clip's LSE-C
    assert judged.in_sync is True and not any(w.startswith("UNSURE") for w in judged.warnings)
