"""bench.build.models: every model maps (x_num, x_cat) to logits [b, num_outputs], trains, and validates its arguments."""
from __future__ import annotations

import socket
from dataclasses import replace

import pytest
import torch

from bench import data
from bench.build.models import MLP, MODELS, EmbeddingMLP, TimmNet


def _batch(ds: data.TensorData, b: int = 6):
    return ds.x_num_train[:b], ds.x_cat_train[:b], ds.y_train[:b]


def _loss(ds: data.TensorData, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if ds.task == "multiclass":
        return torch.nn.functional.cross_entropy(logits, y)
    if ds.task == "binary":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), y)
    return torch.nn.functional.mse_loss(logits.squeeze(1), y)


_cats = data.synthetic(n=40, classes=2, task="binary", cat_fields=5, cardinality=11)
KINDS = {  # one dataset of each kind the suite has: dense, categorical only, mixed, images; each task
    "dense_multiclass": data.synthetic(n=40, d=7, classes=3, seed=0),
    # like movielens100k: no dense features at all
    "categorical_binary": replace(_cats, x_num_train=torch.zeros(40, 0), x_num_test=torch.zeros(10, 0)),
    "mixed_regression": data.synthetic(n=40, d=4, task="regression", cat_fields=3, cardinality=4),
    "images": data.TensorData(
        name="img", task="multiclass", x_num_train=torch.rand(12, 1, 28, 28),
        x_cat_train=torch.zeros(12, 0, dtype=torch.long), y_train=torch.arange(12) % 10,
        x_num_test=torch.rand(2, 1, 28, 28), x_cat_test=torch.zeros(2, 0, dtype=torch.long),
        y_test=torch.tensor([0, 1]), num_classes=10, cardinalities=[],
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("cls", [MLP, EmbeddingMLP])
def test_mlps_give_logits_and_gradients_for_every_dataset_kind(cls, kind):
    ds = KINDS[kind]
    model = cls(ds.input_shape, ds.cardinalities, ds.num_outputs, hidden=(32, 16))
    x_num, x_cat, y = _batch(ds)
    logits = model(x_num, x_cat)
    assert logits.shape == (6, ds.num_outputs) and logits.dtype == torch.float32
    _loss(ds, logits, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_embedding_mlp_is_the_4x800_ctr_model():
    model = EmbeddingMLP((0,), [943, 1682, 7, 2, 21, 382, 216], 1)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [800, 800, 800, 800, 1]
    assert linears[0].in_features == 7 * 16 and model.encoder.embedding.embedding_dim == 16
    x_cat = torch.tensor([[942, 1681, 6, 1, 20, 381, 215], [0, 0, 0, 0, 0, 0, 0]])
    assert model(torch.zeros(2, 0), x_cat).shape == (2, 1)


def test_fields_use_their_own_embedding_rows():
    # code 0 of field 1 must not share a row with code 0 of field 0 (one table, per-field offsets)
    model = MLP((0,), [3, 5], 1, hidden=(), embed_dim=2)
    enc = model.encoder(None, torch.tensor([[0, 0]]))
    table = model.encoder.embedding.weight
    assert torch.equal(enc[0], torch.cat([table[0], table[3]]))


def test_empty_hidden_is_a_linear_model():
    model = MLP((5,), [], 3, hidden=())
    assert [type(m) for m in model.net] == [torch.nn.Linear]
    assert model(torch.randn(4, 5)).shape == (4, 3)


@pytest.mark.parametrize(
    "kwargs, arg",
    [({"hidden": (64, -1)}, "hidden"), ({"hidden": (0,)}, "hidden"), ({"hidden": (3.5,)}, "hidden"),
     ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"), ({"embed_dim": 0}, "embed_dim"),
     ({"num_outputs": 0}, "num_outputs"), ({"cardinalities": [3, 0]}, "cardinalities"),
     ({"input_shape": (-2,)}, "input_shape")],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, arg):
    args = {"input_shape": (4,), "cardinalities": [3], "num_outputs": 2, **kwargs}
    with pytest.raises(ValueError, match=arg):
        MLP(**args)


def test_a_model_needs_some_features():
    with pytest.raises(ValueError, match="no features"):
        MLP((0,), [], 1)


def test_hydra_instantiate_builds_models_from_config():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"_target_": "bench.build.models.MLP", "hidden": [16, 8], "dropout": 0.1})
    model = instantiate(cfg, input_shape=(4,), cardinalities=[3, 2], num_outputs=5)
    assert isinstance(model, MLP) and model(torch.randn(2, 4), torch.zeros(2, 2, dtype=torch.long)).shape == (2, 5)
    assert set(MODELS) == {"mlp", "embedding_mlp", "timm"}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_timm_model_builds_offline_and_trains_on_images(shape, no_network):
    model = TimmNet(shape, [], 10, name="test_resnet")
    x, y = torch.rand(4, *shape), torch.tensor([0, 3, 9, 1])
    logits = model(x, torch.zeros(4, 0, dtype=torch.long))
    assert logits.shape == (4, 10)
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_timm_default_is_resnet18_and_extra_kwargs_reach_timm(no_network):
    model = TimmNet((1, 28, 28), [], 2, drop_rate=0.2)
    assert model.name == "resnet18" and model.model.drop_rate == 0.2
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 2)


def test_timm_rejects_tables_unknown_names_and_offline_pretrained(monkeypatch):
    with pytest.raises(ValueError, match="input_shape"):
        TimmNet((74,), [], 1)
    with pytest.raises(ValueError, match="not a timm model"):
        TimmNet((1, 28, 28), [], 10, name="resnet_from_mars")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="pretrained"):
        TimmNet((1, 28, 28), [], 10, name="test_resnet", pretrained=True)


def test_mlp_learns_separable_synthetic_data():
    ds = data.load("synthetic", n=600, d=8, classes=3, hard_fraction=0.0, seed=2)
    torch.manual_seed(0)
    model = MLP(ds.input_shape, ds.cardinalities, ds.num_outputs, hidden=(32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(ds.x_num_train, ds.x_cat_train), ds.y_train).backward()
        opt.step()
    acc = (model(ds.x_num_test, ds.x_cat_test).argmax(1) == ds.y_test).float().mean().item()
    assert acc > 0.9


@pytest.mark.gpu
def test_models_and_tensordata_run_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    ds = data.synthetic(n=256, d=6, classes=3, cat_fields=2, cardinality=5).to("cuda")
    assert ds.x_num_train.is_cuda and ds.subset(64, 16, seed=0).y_train.is_cuda
    for model in (MLP(ds.input_shape, ds.cardinalities, ds.num_outputs, hidden=(32,)),
                  EmbeddingMLP(ds.input_shape, ds.cardinalities, ds.num_outputs)):
        model = model.cuda()
        logits = model(ds.x_num_train[:8], ds.x_cat_train[:8])
        torch.nn.functional.cross_entropy(logits, ds.y_train[:8]).backward()
        assert logits.shape == (8, 3) and logits.is_cuda
    net = TimmNet((1, 28, 28), [], 10, name="test_resnet").cuda()
    assert net(torch.rand(4, 1, 28, 28, device="cuda")).shape == (4, 10)
