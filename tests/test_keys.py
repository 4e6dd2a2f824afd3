"""What NWS hashes in the harness (bench.build.features): the library's key path, label buckets, model features re-hashed."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench import data as datasets
from bench.build.features import ForwardRekey, ModelRekey, hash_keys, label_groups, sketch_and_slots
from bench.build.models import MLP
from bench.config.schemas import KeyConfig, SketchConfig
from sketch.samplers import NWSSampler


def _data(n: int = 400):
    return datasets.load("synthetic", n=n, d=6, seed=0)


def test_the_harness_hashes_what_the_library_would_for_the_same_features(tmp_path):
    data = _data()
    spec = SketchConfig(depth=8, width=256, bits=6)
    _, slots = sketch_and_slots(spec, data, seed=3, device="cpu", cache_dir=str(tmp_path))
    library = NWSSampler.from_features(data.x_num_train.reshape(data.num_train, -1).float(), 16, depth=8, bits=6,
                                       width=256, keys="center", groups=data.y_train.long(), seed=3)
    assert spec.key.label_buckets and torch.equal(slots, library.slots)  # one code path: feature_keys centres both


def test_from_features_with_its_defaults_builds_what_the_harness_builds_by_default(tmp_path):
    # One set of NWS defaults: the harness's sketch group (SketchConfig's defaults) and the library's
    # from_features(X, B, labels=Y) give the same hash, width and slots; float labels make no buckets.
    data = _data()
    spec = SketchConfig()
    sketch, slots = sketch_and_slots(spec, data, seed=3, device="cpu", cache_dir=str(tmp_path))
    x = data.x_num_train.reshape(data.num_train, -1).float()
    library = NWSSampler.from_features(x, 16, labels=data.y_train.long(), seed=3)
    assert library.sketch.hash == sketch.hash and library.sketch.width == sketch.width
    assert torch.equal(slots, library.slots) and library.refresh_every == 4 and library.mix == 0.1
    unbucketed = NWSSampler.from_features(x, 16, labels=data.y_train.float(), seed=3)
    assert torch.equal(unbucketed.slots, NWSSampler.from_features(x, 16, seed=3).slots)


def test_normalize_modes_change_the_keys_and_none_hashes_the_input_as_given():
    data = _data()
    raw = data.x_num_train.reshape(data.num_train, -1).float()
    assert torch.allclose(hash_keys(data, KeyConfig(normalize="none"), seed=0), raw)
    centred = hash_keys(data, KeyConfig(), seed=0)
    assert torch.allclose(centred.mean(0), torch.zeros(raw.shape[1]), atol=1e-5)
    standard = hash_keys(data, KeyConfig(normalize="standardize"), seed=0)
    assert torch.allclose(standard.std(0, correction=0), torch.ones(raw.shape[1]), atol=1e-4)


def test_label_buckets_keep_classes_apart(tmp_path):
    data = _data()
    spec = SketchConfig(depth=4, width=1024, bits=4, key=KeyConfig(label_buckets=True))  # 16 codes x 4 classes fit
    _, slots = sketch_and_slots(spec, data, seed=0, device="cpu", cache_dir=str(tmp_path))
    y = data.y_train
    for row in range(4):
        for c in y.unique():
            assert not set(slots[y == c, row].tolist()) & set(slots[y != c, row].tolist())
    _, plain = sketch_and_slots(SketchConfig(depth=4, width=1024, bits=4, key=KeyConfig(label_buckets=False)), data, seed=0, device="cpu", cache_dir=str(tmp_path))
    assert not torch.equal(plain, slots)  # and the cache tells the two apart


def test_label_buckets_apply_only_where_there_are_classes():
    # the default (label_buckets=true) must work on every shipped dataset: a regression target has one set of buckets
    data = SimpleNamespace(task="regression", name="r", y_train=torch.zeros(3))
    assert label_groups(data, KeyConfig(label_buckets=True)) is None
    classes = SimpleNamespace(task="multiclass", name="c", y_train=torch.tensor([0.0, 2.0, 1.0]))
    assert label_groups(classes, KeyConfig(label_buckets=True)).tolist() == [0, 2, 1]


def test_model_keys_are_rehashed_every_k_epochs_and_the_sketch_refilled_from_the_last_losses():
    data = _data()
    model = MLP(data.input_shape, data.cardinalities, data.num_outputs, hidden=[16, 8])
    key = KeyConfig(input="model", rehash_every=2)
    sketch, slots = sketch_and_slots(SketchConfig(depth=4, width=256, bits=4, key=key), data, seed=0, device="cpu",
                                     cache_dir=None, model=model)
    sampler = NWSSampler(sketch, slots, 16)
    rekey = ModelRekey(sampler, model, data, key, seed=0, update=sampler.update)
    seen = torch.arange(0, 40)
    rekey.feedback(seen, torch.linspace(0.1, 2.0, 40))
    assert float(sketch.table[:, 1].sum()) == 40 * 4  # the feedback reached the sampler: 40 items x 4 rows
    with torch.no_grad():
        model.net[0].weight.mul_(-1.0)  # the model changed: its features hash elsewhere
    before = sampler.slots.clone()
    rekey.on_epoch(1)  # not a re-hash epoch
    assert torch.equal(sampler.slots, before)
    rekey.on_epoch(2)
    assert not torch.equal(sampler.slots, before)
    assert float(sketch.table[:, 1].sum()) == 40 * 4  # rebuilt: each seen item once, under its new slots
    assert float(sketch.table[:, 0].sum()) == pytest.approx(4 * float(torch.linspace(0.1, 2.0, 40).sum()), rel=1e-5)
    restored = NWSSampler(sketch_and_slots(SketchConfig(depth=4, width=256, bits=4, key=key), data, seed=0,
                                           device="cpu", cache_dir=None, model=model)[0], before, 16)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.slots, sampler.slots)  # re-keyed slots travel with the checkpoint


def test_follow_moves_each_trained_batch_to_the_slots_of_its_training_features():
    # The forward pre-hook keeps the training forward's penultimate features; feedback moves the batch's items
    # to their slots (centred by the running mean, hashed by a second hash) before inserting the losses; items
    # never trained on keep their input slots, and evaluation forwards are not kept.
    data = _data()
    model = MLP(data.input_shape, data.cardinalities, data.num_outputs, hidden=[16, 8])
    key = KeyConfig(follow=True)
    sketch, slots = sketch_and_slots(SketchConfig(depth=4, width=256, bits=4, key=key), data, seed=0, device="cpu",
                                     cache_dir=None)
    sampler = NWSSampler(sketch, slots, 16)
    follow = ForwardRekey(sampler, model, data, key, seed=0, update=sampler.update)
    idx = next(iter(sampler))
    model.train()
    losses = model(data.x_num_train[idx], data.x_cat_train[idx]).logsumexp(1).detach()
    follow.feedback(idx, losses)
    features = model.embed(data.x_num_train[idx], data.x_cat_train[idx]).detach()
    expected = follow._keyer.slots(features - features.mean(0), data.y_train[idx].long()).int()
    assert torch.equal(sampler.slots[idx], expected)
    untouched = torch.ones(data.num_train, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(sampler.slots[untouched], slots[untouched])
    assert float(sketch.table[:, 1].sum()) == idx.numel() * 4
    assert float(sketch.table[expected.reshape(-1).long(), 1].min()) >= 1  # inserted under the new slots
    model.eval()
    with torch.no_grad():
        model(data.x_num_train[:5], data.x_cat_train[:5])
    assert follow._features is None  # evaluation does not re-key
