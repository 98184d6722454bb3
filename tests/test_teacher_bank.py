"""The teacher bank (solo_sqsp.synthetic.bank) and the source factory, on a real small StyleGAN2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from small_generator import small_generator

from solo_sqsp.augment import BatchAugment
from solo_sqsp.synthetic.bank import (
    BankError,
    BankSource,
    build_bank,
    ensure_bank,
    images_to_uint8,
    open_bank,
    tagged_seed,
    teacher_record,
)
from solo_sqsp.synthetic.bank.storage import FEATURES_FILE, IMAGES_FILE, META_FILE, partial_path
from solo_sqsp.synthetic.sources import build_synthetic_source
from solo_sqsp.synthetic.stream import SyntheticSource, stream_seed
from solo_sqsp.teachers import GeneratorTeacher

SIZE, BUILD_BATCH, SEED = 40, 16, 3  # chunks of 16, 16 and 8 samples
AUGMENTATION = {
    "rrc": {"enabled": True, "crop_min_scale": 0.2, "crop_max_scale": 1.0},
    "color_jitter": {"prob": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4},
    "horizontal_flip": {"prob": 0.5},
    "crop_size": 12,
}


def small_teacher(seed: int = 0, features: str = r"synthesis\.b\d+$") -> GeneratorTeacher:
    generator = small_generator(resolution=16, seed=seed)
    return GeneratorTeacher(generator, features=features, noise_mode="random")


class Interrupted(Exception):
    """Stands in for a killed build."""


@pytest.fixture(scope="module")
def teacher() -> GeneratorTeacher:
    return small_teacher()


@pytest.fixture(scope="module")
def bank_dir(teacher, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("banks") / "bank"
    build_bank(path, teacher, size=SIZE, seed=SEED, build_batch=BUILD_BATCH, progress=False)
    return path


@pytest.fixture(scope="module")
def augment() -> BatchAugment:
    return BatchAugment.from_cfg(AUGMENTATION, mean=(0.5,) * 3, std=(0.25,) * 3)


def test_bank_holds_the_teachers_outputs_for_its_latents(teacher, bank_dir):
    bank = open_bank(bank_dir, teacher_record(teacher))
    assert bank.images.shape == (SIZE, 3, 16, 16) and bank.images.dtype == np.uint8
    assert bank.features.shape == (SIZE, sum(teacher.feature_dims))
    for chunk, start in enumerate(range(0, SIZE, BUILD_BATCH)):
        stop = min(start + BUILD_BATCH, SIZE)
        rng = torch.Generator().manual_seed(tagged_seed(SEED, "build", chunk))
        sample = teacher.sample(stop - start, rng)  # the build's draws, replayed
        assert torch.equal(
            torch.from_numpy(np.array(bank.images[start:stop])), images_to_uint8(sample.images)
        )
        stored = torch.from_numpy(np.array(bank.features[start:stop])).float()
        torch.testing.assert_close(stored, torch.cat(sample.features, 1), rtol=1e-3, atol=1e-3)


def test_served_batch_is_the_stored_samples(teacher, bank_dir):
    bank = open_bank(bank_dir)
    source = BankSource(bank, "cpu", 6, augment=None, mean=(0.0,) * 3, std=(1.0,) * 3, seed=1)
    index = source.indices(0).numpy()
    batch = source.next_batch()
    stored = torch.from_numpy(np.asarray(bank.images[index])).float() / 255
    torch.testing.assert_close(batch.images, stored, rtol=0, atol=0)
    torch.testing.assert_close(batch.views[0], stored, rtol=0, atol=1e-6)
    features = torch.from_numpy(np.asarray(bank.features[index])).float()
    assert [f.shape for f in batch.features] == [(6, d) for d in teacher.feature_dims]
    assert torch.equal(torch.cat(batch.features, 1), features)
    live = SyntheticSource(teacher, 6, augment=None).next_batch()
    assert [f.shape for f in live.features] == [f.shape for f in batch.features]


def test_serving_is_shuffled_passes_deterministic_and_resumable(bank_dir, augment):
    bank = open_bank(bank_dir, verify=False)

    def source(**stream) -> BankSource:
        return BankSource(bank, "cpu", 8, augment, num_views=2, **{"seed": 5, **stream})

    first = source()
    one_pass = torch.cat([first.indices(step) for step in range(SIZE // 8)])
    assert sorted(one_pass.tolist()) == list(range(SIZE))
    assert not torch.equal(one_pass, torch.cat([first.indices(s) for s in range(5, 10)]))

    batches = [first.next_batch() for _ in range(3)]
    assert not torch.equal(batches[0].views[0], batches[0].views[1])
    again = source()
    assert all(torch.equal(again.next_batch().views[1], b.views[1]) for b in batches)
    assert not torch.equal(source(rank=1).next_batch().images, batches[0].images)

    state = first.state_dict()
    expected = [first.next_batch() for _ in range(5)]  # crosses into the second pass
    resumed = source(rank=0)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.next_batch()
        assert torch.equal(got.views[0], want.views[0])
        assert torch.equal(got.features[0], want.features[0])
    with pytest.raises(ValueError, match="seed=5"):
        source(seed=6).load_state_dict(state)


def test_bank_serves_per_batch_augmentation(bank_dir):
    """``augment_mode: per_batch`` on the bank path: every sample of a view shares one draw."""
    per_batch = BatchAugment.from_cfg(
        AUGMENTATION, mean=(0.5,) * 3, std=(0.25,) * 3, mode="per_batch"
    )
    batch = BankSource(open_bank(bank_dir, verify=False), "cpu", 6, per_batch, seed=1).next_batch()
    rng = torch.Generator().manual_seed(stream_seed(1, 0, 0, 0))
    params = per_batch.sample_params(6, 16, 16, rng)
    assert (params.boxes == params.boxes[:1]).all()
    assert (params.jitter.brightness == params.jitter.brightness[:1]).all()
    expected = per_batch.apply(batch.images, per_batch.plan(params, 3, 16, 16))
    torch.testing.assert_close(batch.views[0], expected, rtol=0, atol=0)


def test_interrupted_build_resumes_where_it_stopped(teacher, bank_dir, tmp_path):
    path = tmp_path / "bank"

    def stop_after_two_chunks(count: int) -> None:
        if count == 2 * BUILD_BATCH:
            raise Interrupted

    with pytest.raises(Interrupted):
        build_bank(
            path,
            teacher,
            size=SIZE,
            seed=SEED,
            build_batch=BUILD_BATCH,
            progress=False,
            on_chunk=stop_after_two_chunks,
        )
    assert not path.exists()
    meta = json.loads((partial_path(path) / META_FILE).read_text())
    assert meta["count"] == 2 * BUILD_BATCH and not meta["complete"]
    with pytest.raises(BankError, match="unfinished build"):
        open_bank(path)

    counts: list[int] = []
    build_bank(
        path,
        teacher,
        size=SIZE,
        seed=SEED,
        build_batch=BUILD_BATCH,
        progress=False,
        on_chunk=counts.append,
    )
    assert counts == [SIZE]  # only the last chunk was generated
    assert not partial_path(path).exists()
    for name in (IMAGES_FILE, FEATURES_FILE):
        assert (path / name).read_bytes() == (bank_dir / name).read_bytes()
    open_bank(path, teacher_record(teacher))


def test_another_teacher_is_refused_naming_what_differs(bank_dir):
    with pytest.raises(BankError, match=r"another teacher \(the generator's weights differ\)"):
        open_bank(bank_dir, teacher_record(small_teacher(seed=1)))
    fewer_features = small_teacher(features=r"synthesis\.b(4|8)$")
    with pytest.raises(BankError, match=r"feature_names: bank .* vs teacher") as error:
        open_bank(bank_dir, teacher_record(fewer_features))
    assert str(bank_dir) in str(error.value) and "bank_path" in str(error.value)


def test_truncated_or_corrupt_bank_files_are_named(bank_dir, tmp_path):
    def damaged_copy(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(bank_dir, copy)
        return copy

    truncated = damaged_copy("truncated")
    with open(truncated / IMAGES_FILE, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(BankError, match=rf"{IMAGES_FILE} has 100 bytes.*truncated or corrupt"):
        open_bank(truncated)

    flipped = damaged_copy("flipped")
    data = bytearray((flipped / FEATURES_FILE).read_bytes())
    data[-1] ^= 0xFF
    (flipped / FEATURES_FILE).write_bytes(bytes(data))
    with pytest.raises(BankError, match=r"samples 32\.\.39 .* fail their checksum"):
        open_bank(flipped)
    open_bank(flipped, verify=False)  # the check costs a read of the bank: it can be skipped

    garbled = damaged_copy("garbled")
    (garbled / META_FILE).write_text("{not json")
    with pytest.raises(BankError, match=rf"{META_FILE} is corrupt.*delete"):
        open_bank(garbled)


def test_ensure_bank_reuses_a_matching_bank_and_refuses_other_settings(teacher, bank_dir):
    before = (bank_dir / META_FILE).stat().st_mtime_ns
    bank = ensure_bank(bank_dir, teacher, size=SIZE, seed=SEED, build_batch=BUILD_BATCH)
    assert bank.size == SIZE and (bank_dir / META_FILE).stat().st_mtime_ns == before
    with pytest.raises(BankError, match="holds 40 samples of seed 3 but bank_size=50"):
        ensure_bank(bank_dir, teacher, size=50, seed=SEED)


def test_factory_dispatches_on_source(teacher, bank_dir, augment, tmp_path, monkeypatch):
    common = dict(batch_size=4, augment=augment, num_views=2, seed=SEED, rank=0)
    assert isinstance(build_synthetic_source(None, teacher, **common), SyntheticSource)
    live = build_synthetic_source({"source": "live"}, teacher, **common)
    assert isinstance(live, SyntheticSource)
    spec = {"source": "bank", "bank_size": SIZE, "bank_path": str(bank_dir), "bank_seed": SEED}
    served = build_synthetic_source(spec, teacher, **common)
    assert isinstance(served, BankSource) and len(served.next_batch().views) == 2
    monkeypatch.chdir(tmp_path)  # without bank_path: a cache named by the teacher's fingerprint
    spec = {"source": "bank", "bank_size": 8, "bank_build_batch": 8}
    assert build_synthetic_source(spec, teacher, **common).bank.size == 8
    name = f"{teacher_record(teacher)['fingerprint'][:16]}-n8-seed{SEED}"
    assert sorted(p.name for p in (tmp_path / "synthetic_banks").iterdir()) == [
        name,
        f"{name}.lock",
    ]

    with pytest.raises(ValueError, match=r"source='banks' is unknown; use one of \('live', 'ba"):
        build_synthetic_source({"source": "banks"}, teacher, **common)
    with pytest.raises(ValueError, match=r"unknown keys \['bank_sizes'\]"):
        build_synthetic_source({"source": "bank", "bank_sizes": 3}, teacher, **common)
    with pytest.raises(
        ValueError,
        match=r"synthetic.augment_mode='per_image' is unknown; use one of \('per_sample', 'per_b",
    ):
        build_synthetic_source({"augment_mode": "per_image"}, teacher, **common)


@pytest.mark.parametrize(
    "change",
    [
        {"image_shape": ["3", 16, 16]},
        {"image_shape": [3, 16, -16]},
        {"size": -40},
        {"size": True},
        {"build_batch": 0},
        {"count": 41},
        {"feature_dims": [1, 2]},
        {"feature_names": "synthesis.b4"},
        {"chunk_crc32": [[1, 2]] * 4},
        {"teacher": [1]},
        {"version": "x" * 10**6},
    ],
)
def test_manifest_values_are_checked_by_type_and_range(bank_dir, tmp_path, change):
    """Hostile bank.json values end in a short BankError, never a raw error (issue 15)."""
    copy = tmp_path / "bank"
    shutil.copytree(bank_dir, copy)
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, **change}))
    with pytest.raises(BankError) as raised:
        open_bank(copy)
    assert len(str(raised.value)) < 1000
    open_bank(bank_dir)


def test_deep_json_and_data_symlinked_out_of_the_bank_are_refused(bank_dir, tmp_path):
    deep = tmp_path / "deep"
    shutil.copytree(bank_dir, deep)
    (deep / META_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BankError, match="is corrupt"):
        open_bank(deep)

    linked = tmp_path / "linked"
    shutil.copytree(bank_dir, linked)
    outside = tmp_path / "elsewhere.bin"
    (linked / IMAGES_FILE).rename(outside)
    (linked / IMAGES_FILE).symlink_to(outside)
    with pytest.raises(BankError, match=r"symlink .* outside the bank"):
        open_bank(linked)
    open_bank(bank_dir)
