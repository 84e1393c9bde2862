"""The token2wav data module: flow batches keep 4 mel frames per code, vocoder batches are equal segments,
bad samples are skipped by key and counted, readers split the samples."""

import itertools
import logging

import pytest
import torch

from osum.token2wav.data import MelCodesDataModule, MelCodesStream, check_code_count
from osum.token2wav.mel import MelConfig


def module(root, mode="flow", **kw):
    split = "_codes" if mode == "flow" else ""
    return MelCodesDataModule(train=str(root / "mini_tts" / f"train{split}"), valid=str(root / "mini_tts" / f"valid{split}"),
                              batch_size=kw.pop("batch_size", 2), num_workers=0, seed=0, mode=mode, **kw)


def test_flow_batches_have_four_frames_per_code_and_skip_mismatches_by_key(tts_root, caplog):
    dm = module(tts_root)
    with caplog.at_level(logging.WARNING, logger="osum.data"):
        batches = list(dm.stream(dm.train_sets, train=False))  # one ordered pass over the train shards
    keys = [k for b in batches for k in b["keys"]]
    assert sorted(keys) == [f"utt{i:03d}" for i in range(6)]
    for b in batches:
        assert b["mel"].shape == (len(b["keys"]), 80, 4 * b["codes"].shape[1])
        assert torch.equal(b["mel_lengths"], 4 * b["code_lengths"])
        assert b["codes"].dtype == torch.long and int(b["code_lengths"].max()) == b["codes"].shape[1]
        assert b["speakers"] == [f"v{int(k[3:]) % 2}" for k in b["keys"]]  # for references from another clip
        for i, n in enumerate(b["code_lengths"].tolist()):  # the real frames hold audio, the padding the floor
            assert float(b["mel"][i, :, : 4 * n].max()) > -5.0
            if 4 * n < b["mel"].shape[-1]:
                assert float(b["mel"][i, :, 4 * n :].max()) <= -11.5
    skips = {}
    for b in itertools.islice(iter(dm.train_dataloader()), 5):  # the train stream carries the counts along
        for reason, n in b["skips"].items():
            skips[reason] = skips.get(reason, 0) + n
    assert set(skips) == {"speech_tokens_mismatch", "no_audio"} and skips["no_audio"] >= 1
    assert any("bad_count" in r.getMessage() and "speech_tokens_mismatch" in r.getMessage() for r in caplog.records)


def test_code_count_tolerance():
    check_code_count(25, 16000)
    check_code_count(24, 16000)
    check_code_count(26, 16000)
    with pytest.raises(Exception, match="speech_tokens_mismatch"):
        check_code_count(27, 16000)


def test_long_samples_are_cropped_at_a_code_boundary(tts_root):
    dm = module(tts_root, max_seconds=0.4, batch_size=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["codes"].shape[1] == 10 and batch["mel"].shape[-1] == 40
    assert batch["skips"].get("cropped_too_long", 0) >= 1


def test_train_stream_is_infinite_and_shuffled(tts_root):
    dm = module(tts_root, buffer_size=4)
    batches = list(itertools.islice(iter(dm.train_dataloader()), 8))  # 16 samples from 6 usable ones
    keys = [k for b in batches for k in b["keys"]]
    assert len(keys) == 16 and set(keys) == {f"utt{i:03d}" for i in range(6)}
    first_pass = keys[:6]
    assert first_pass != sorted(first_pass)


def test_vocoder_batches_are_equal_segments(tts_root):
    dm = module(tts_root, mode="vocoder", segment_seconds=0.4)
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (2, 6400) and batch["mel"].shape == (2, 80, 40)
    assert "codes" not in batch
    long = module(tts_root, mode="vocoder", segment_seconds=3.0)  # clips are about 1 s: padded with silence
    batch = next(iter(long.val_dataloader()))
    assert batch["audio"].shape == (2, 48000) and float(batch["audio"][:, 30000:].abs().max()) == 0.0
    assert batch["audio_seconds"] < 4.0


def test_readers_split_the_samples(tts_root):
    dm = module(tts_root)
    keys = []
    for rank in (0, 1):
        stream = MelCodesStream(dm.valid_shards + dm.train_sets, "flow", MelConfig(), 2, 10.0, 1.0, train=False)
        stream.rank, stream.world = rank, 2
        keys.append({k for b in stream for k in b["keys"]})
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    assert keys[0] | keys[1] == {f"utt{i:03d}" for i in (*range(6), 10, 11)}


def test_bad_settings_and_unusable_sets_are_refused(tts_root):
    with pytest.raises(ValueError, match="mode"):
        module(tts_root, mode="tts")
    with pytest.raises(FileNotFoundError):
        MelCodesDataModule(train=str(tts_root / "nothing"), valid=None)
    only_bad = MelCodesStream([s for s in module(tts_root).train_sets], "flow", MelConfig(), 2, 10.0, 1.0, train=False)
    only_bad.shards = [only_bad.shards[-1]]  # the last shard holds only the mismatched and the text-only samples
    with pytest.raises(RuntimeError, match="no usable flow sample"):
        list(only_bad)


def test_audio_member_reads_the_reply_speech_its_codes_belong_to(tmp_path):
    """A dialogue sample's ``speech_tokens`` are its reply's codes (member ``reply_flac``): with
    ``audio_member`` the flow pairs them with that audio; the user's clip would not match their count."""
    import numpy as np

    from osum.data.shards import ShardWriter

    def tone(seconds):
        return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)

    with ShardWriter(tmp_path / "dlg", max_samples=10) as w:
        for i in range(3):
            w.write(f"dlg{i}", tone(0.6), 16000, {"txt": "hi", "speech_tokens": list(range(40))},
                    extra_audio={"reply_flac": tone(1.6)})  # 1.6 s at 25 Hz: 40 codes
        w.write("no_reply", tone(0.6), 16000, {"txt": "hi", "speech_tokens": list(range(40))})
    dm = MelCodesDataModule(train=str(tmp_path / "dlg"), valid=None, batch_size=8, num_workers=0,
                            audio_member="reply_flac")
    [batch] = list(dm.stream(dm.train_sets, train=False))
    assert batch["keys"] == ["dlg0", "dlg1", "dlg2"] and batch["mel"].shape == (3, 80, 160)
    assert batch["skips"] == {"no_audio": 1}
    plain = MelCodesDataModule(train=str(tmp_path / "dlg"), valid=None, batch_size=8, num_workers=0)
    with pytest.raises(RuntimeError, match="speech_tokens_mismatch=4"):  # 15 codes' worth of user audio
        list(plain.stream(plain.train_sets, train=False))


def test_training_crops_are_windows_of_at_least_crop_fraction(tts_root):
    whole_clips = module(tts_root)
    full = {k: c[:n].tolist() for b in whole_clips.stream(whole_clips.train_sets, train=False)
            for k, c, n in zip(b["keys"], b["codes"], b["code_lengths"])}
    dm = module(tts_root, crop_fraction=0.5, batch_size=3)
    shorter = 0
    for b in itertools.islice(iter(dm.train_dataloader()), 6):
        assert torch.equal(b["mel_lengths"], 4 * b["code_lengths"]) and b["mel"].shape[-1] == 4 * b["codes"].shape[1]
        for k, c, n in zip(b["keys"], b["codes"], b["code_lengths"].tolist()):
            whole = full[k]
            assert -(-len(whole) // 2) <= n <= len(whole)
            window = c[:n].tolist()
            assert any(whole[s : s + n] == window for s in range(len(whole) - n + 1))  # contiguous, in order
            shorter += n < len(whole)
    assert shorter > 0
    valid = list(dm.stream(dm.train_sets, train=False))  # evaluation streams are never cropped
    assert {k: c[:n].tolist() for b in valid for k, c, n in zip(b["keys"], b["codes"], b["code_lengths"])} == full
    with pytest.raises(ValueError, match="crop_fraction"):
        module(tts_root, crop_fraction=0.0)
