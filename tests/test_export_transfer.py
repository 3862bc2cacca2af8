"""Transfer-learning machinery on tiny synthetic tensors: backbone loading, cache, resume, points."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export import lite, transfer  # noqa: E402
from export.data import Dataset  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.nets import Shipped  # noqa: E402
from export.recipes import RECIPES  # noqa: E402
from export.screening import by_patient, named_points, patient_decision, shortcut_probe  # noqa: E402
from kiosk.preprocess import STEPS, Canvas  # noqa: E402

#: (c_in, c_mid, c_out, kernel) of a tiny four-block EfficientNet-Lite-shaped network.
TINY = ((8, 8, 4, 3), (4, 12, 6, 3), (6, 18, 6, 5), (6, 18, 10, 3))


def bn(state: dict, name: str, c: int) -> None:
    """Batch-norm entries as the registry state dicts carry them."""
    state[f"{name}.weight"], state[f"{name}.bias"] = torch.rand(c) + 0.5, torch.randn(c) * 0.1
    state[f"{name}.running_mean"], state[f"{name}.running_var"] = torch.randn(c) * 0.1, torch.rand(c) + 0.5
    state[f"{name}.num_batches_tracked"] = torch.tensor(0)


def tiny_state() -> dict:
    """A random state dict with the key layout of efficientnet-lite0-57934424.pth."""
    torch.manual_seed(0)
    state = {"_conv_stem.weight": torch.randn(8, 3, 3, 3) * 0.3}
    bn(state, "_bn0", 8)
    for i, (c_in, c_mid, c_out, k) in enumerate(TINY):
        if c_mid != c_in:
            state[f"_blocks.{i}._expand_conv.weight"] = torch.randn(c_mid, c_in, 1, 1) * 0.3
            bn(state, f"_blocks.{i}._bn0", c_mid)
        state[f"_blocks.{i}._depthwise_conv.weight"] = torch.randn(c_mid, 1, k, k) * 0.3
        bn(state, f"_blocks.{i}._bn1", c_mid)
        state[f"_blocks.{i}._project_conv.weight"] = torch.randn(c_out, c_mid, 1, 1) * 0.3
        bn(state, f"_blocks.{i}._bn2", c_out)
    state["_conv_head.weight"] = torch.randn(16, 10, 1, 1) * 0.3
    bn(state, "_bn1", 16)
    state["_fc.weight"], state["_fc.bias"] = torch.randn(5, 16), torch.zeros(5)
    return state


def test_sha256_check_refuses_a_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(tiny_state(), path)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert "_conv_stem.weight" in lite.load_checked(path, good)
    with pytest.raises(ExportError, match="sha256"):
        lite.load_checked(path, lite.WEIGHTS["efficientnet-lite0"].sha256)


def test_network_is_read_from_the_state_dict_and_the_map_explains_the_logits() -> None:
    net = lite.from_state(tiny_state(), outputs=2).eval()
    strides = [b.stride for b in net._blocks]
    assert strides == [1, 2, 1, 2]  # a new stage (output width changes) strides as EfficientNet's do
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, cam = net(x)
        split = net.tail(net.prefix(x, 2), 2)[0]
    assert cam.shape == (3, 2, 8, 8)  # stem /2, then strides 2 and 2
    assert torch.allclose(logits, cam.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(split, logits, atol=1e-5)  # prefix + tail is the whole network


def test_grey_network_equals_rgb_network_on_a_copied_grey_film() -> None:
    rgb, grey = lite.from_state(tiny_state(), 1, 3).eval(), lite.from_state(tiny_state(), 1, 1).eval()
    grey.head.load_state_dict(rgb.head.state_dict())
    film = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grey(film)[0], rgb(film.repeat(1, 3, 1, 1))[0], atol=1e-5)


def test_same_padding_gives_tensorflow_output_sizes() -> None:
    for size, kernel in ((256, 3), (255, 5), (16, 5)):
        padded = lite.same_pad(torch.zeros(1, 1, size, size), kernel, 2)
        out = torch.nn.functional.conv2d(padded, torch.zeros(1, 1, kernel, kernel), stride=2)
        assert out.shape[-1] == -(-size // 2)


def tiny_data(n: int = 60) -> Dataset:
    """Random 32 px RGB images whose label is their brightness (learnable), three splits."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 150, (n, 32, 32, 3)).astype(np.uint8) + (labels * 100)[
        :, None, None, None
    ].astype(np.uint8)
    split = np.array(["train", "calibration", "test"] * (n // 3))
    patients = np.array([f"p{i // 2}" for i in range(n)])
    return Dataset(images, labels[:, None].astype(np.float32), patients, split, patients.copy())


@pytest.fixture
def tiny_recipe(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        transfer,
        "pretrained",
        lambda backbone, outputs, channels, upscale=1.0: lite.from_state(
            tiny_state(), outputs, channels, upscale
        ),
    )
    spec = {
        **RECIPES["cxr-adult"].spec,
        "channels": 3,
        "size": 32,
        "steps": [{"op": "scale", "mean": [0.5] * 3, "std": [0.5] * 3}],
    }
    return replace(
        RECIPES["cxr-adult"], spec=spec, batch=8, cache_blocks=2, cached_views=2, unfreeze=((1, 4), (1, 2))
    )


def test_fine_tune_caches_views_and_resumes_where_it_stopped(tmp_path: Path, tiny_recipe) -> None:  # type: ignore[no-untyped-def]
    logs: list[str] = []
    one_epoch = replace(tiny_recipe, unfreeze=((1, 4),))
    transfer.fine_tune(one_epoch, tiny_data(), tmp_path, log=logs.append, threads=1)
    cache = sorted(p.name for p in (tmp_path / "transfer").iterdir())
    assert cache == ["calibration.npy", "train-view0.npy", "train-view1.npy"]
    view0, view1 = (np.load(tmp_path / "transfer" / f"train-view{v}.npy") for v in (0, 1))
    assert view0.shape == (20, 6, 8, 8) and not np.array_equal(view0, view1)  # view 1 is augmented
    net = transfer.fine_tune(tiny_recipe, tiny_data(), tmp_path, log=logs.append, threads=1)
    assert any(line.startswith("resumed after epoch 1 of 2") for line in logs)
    history = torch.load(tmp_path / "last.pt", weights_only=True)["state"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["first_trainable_block"] for h in history] == [4, 2]  # staged unfreezing
    assert "ETA" in logs[-2] or "ETA" in logs[-1]
    shipped = Shipped([net], 0, views=2).eval()
    with torch.no_grad():
        logits, cam = shipped(torch.randn(2, 3, 32, 32))
    assert torch.allclose(logits, cam.mean(dim=(2, 3)), atol=1e-6)


def test_fresh_views_augment_every_step_without_a_cache(tmp_path: Path, tiny_recipe) -> None:  # type: ignore[no-untyped-def]
    fresh = replace(tiny_recipe, cached_views=0, unfreeze=((1, 4),))
    data = tiny_data()
    logs: list[str] = []
    transfer.fine_tune(fresh, data, tmp_path, log=logs.append, threads=1)
    assert sorted(p.name for p in (tmp_path / "transfer").iterdir()) == ["calibration.npy"]
    net = lite.from_state(tiny_state(), 1)
    source = transfer.FreshViews(net, data.part("train").images, fresh, "cpu")
    index = np.arange(8)
    first = source.batch(index, torch.Generator().manual_seed(1))
    again = source.batch(index, torch.Generator().manual_seed(2))
    assert first.shape == (8, 6, 8, 8) and not torch.equal(first, again)  # a new view each draw
    assert not first.requires_grad and not net._blocks[0].training  # the frozen stages stay frozen
    resumed = replace(fresh, unfreeze=((1, 4), (1, 2)))
    transfer.fine_tune(resumed, data, tmp_path, log=logs.append, threads=1)
    assert any(line.startswith("resumed after epoch 1 of 2") for line in logs)
    history = torch.load(tmp_path / "last.pt", weights_only=True)["state"]["history"]
    assert [h["first_trainable_block"] for h in history] == [4, 2]


def test_upscaled_network_enlarges_its_input_inside_the_graph() -> None:
    plain = lite.from_state(tiny_state(), 1).eval()
    larger = lite.from_state(tiny_state(), 1, upscale=1.5).eval()
    larger.head.load_state_dict(plain.head.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        cam_plain, cam_larger = plain(x)[1], larger(x)[1]
        enlarged = torch.nn.functional.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=False)
        assert torch.allclose(larger(x)[0], plain(enlarged)[0], atol=1e-5)
    assert cam_plain.shape[-1] == 4 and cam_larger.shape[-1] == 6


def test_staged_unfreezing_freezes_the_early_blocks(tiny_recipe) -> None:  # type: ignore[no-untyped-def]
    net = lite.from_state(tiny_state(), 1)
    assert transfer.stage_at(tiny_recipe, 0) == 4 and transfer.stage_at(tiny_recipe, 5) == 2
    transfer.set_trainable(net, 3)
    assert not any(p.requires_grad for p in net._blocks[2].parameters())
    assert all(p.requires_grad for p in net._blocks[3].parameters()) and net._blocks[3].training
    factors = [g["factor"] for g in transfer.parameter_groups(net, tiny_recipe)]
    assert factors[0] == 1.0 and factors == sorted(factors, reverse=True) and len(factors) == 3


def test_named_points_are_set_on_the_calibration_split() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = 1 / (1 + np.exp(-rng.normal(y * 1.5, 1.0)))
    points = named_points((y[:200], p[:200]), (y[200:], p[200:]), 0.9)
    assert points["screening"]["calibration_split"]["sensitivity"] >= 0.9
    assert points["balanced"]["threshold"] > points["screening"]["threshold"]
    assert 0 < points["screening"]["sensitivity"] <= 1 and points["screening"]["n_positive"] == int(
        y[200:].sum()
    )


def test_patient_rule_combines_both_eyes() -> None:
    labels = np.array([1, 0, 0, 0, 1, 1])
    probabilities = np.array([0.9, 0.1, 0.2, 0.4, 0.6, 0.8])
    patients = np.array(["a", "a", "b", "b", "c", "c"])
    ids, positive, score = by_patient(labels, probabilities, patients, "mean")
    assert ids.tolist() == ["a", "b", "c"] and positive.tolist() == [True, False, True]
    assert score == pytest.approx([0.5, 0.3, 0.7])
    assert by_patient(labels, probabilities, patients, "max")[2] == pytest.approx([0.9, 0.4, 0.8])
    rng = np.random.default_rng(4)
    eyes = rng.integers(0, 2, 400)
    found = patient_decision(
        (eyes[:200], rng.random(200) * 0.5 + eyes[:200] * 0.3, np.repeat(np.arange(100), 2)),
        (eyes[200:], rng.random(200) * 0.5 + eyes[200:] * 0.3, np.repeat(np.arange(100), 2)),
        0.9,
        seed=0,
    )
    assert found["rule"] in ("max", "mean") and found["metrics"]["n_patients"] == 100
    assert set(found["operating_points"]) == {"screening", "balanced"}


def test_shortcut_probe_sees_a_score_that_only_knows_the_film_type() -> None:
    rng = np.random.default_rng(5)
    view = np.where(rng.random(300) < 0.5, "AP", "PA")
    labels = (rng.random(300) < np.where(view == "AP", 0.8, 0.2)).astype(int)
    score = (view == "AP") + rng.normal(0, 0.1, 300)  # knows the view, nothing else
    probe = shortcut_probe(labels, score, {"view": view}, seed=0)
    assert probe["view"]["score_predicts"]["PA vs AP"]["auc"] < 0.05  # i.e. AP vs PA perfectly
    assert probe["label"]["auc"] > 0.7
    within = probe["view"]["label_auc_within"]
    assert abs(within["AP"]["auc"] - 0.5) < 0.15 and abs(within["PA"]["auc"] - 0.5) < 0.15


def test_like_eyepacs_256_squashes_a_camera_photograph_and_leaves_a_copy_alone() -> None:
    step = {"op": "like_eyepacs_256", "size": 256, "quality": 90}
    copy = np.random.default_rng(6).integers(0, 255, (256, 256, 3)).astype(np.uint8)
    assert STEPS["like_eyepacs_256"](Canvas(copy), step).pixels is copy
    yy, xx = np.mgrid[:1944, :2592]
    disc = (yy - 972) ** 2 + (xx - 1296) ** 2 < 900**2
    photo = np.zeros((1944, 2592, 3), dtype=np.uint8)
    photo[disc] = (120, 60, 30)
    photo[disc & (xx < 1296)] = (100, 50, 20)  # two dim halves: equalisation spreads them apart
    out = STEPS["like_eyepacs_256"](Canvas(photo), step).pixels
    assert out.shape == (256, 256, 3)
    assert out[128, 200, 0] > 240 and out[0, 0, 0] < 10  # cropped to the disc, channel equalised


def test_platt_offset_recovers_a_known_logit_shift() -> None:
    from kiosk.stats import fit_platt, sigmoid

    rng = np.random.default_rng(7)
    logits = rng.normal(-6.0, 4.0, 4000)
    labels = rng.random(4000) < sigmoid(0.25 * logits + 1.5)  # true: (logit + 6) / 4
    a, b = fit_platt(labels, logits)
    assert a == pytest.approx(0.25, abs=0.03) and b / a == pytest.approx(6.0, abs=0.8)


def test_a_weight_average_of_runs_is_their_mean_and_keeps_counters_whole() -> None:
    from export.soup import average

    a, b = lite.from_state(tiny_state(), 1).state_dict(), lite.from_state(tiny_state(), 1).state_dict()
    b = {k: v + 1 if v.is_floating_point() else v + 3 for k, v in b.items()}
    mean = average([a, b])
    key = "_blocks.0._depthwise_conv.weight"
    assert torch.allclose(mean[key], a[key] + 0.5)
    counter = "_bn0.num_batches_tracked"
    assert mean[counter].dtype == a[counter].dtype and int(mean[counter]) == int(a[counter]) + 1
    net = lite.from_state(tiny_state(), 1)
    net.load_state_dict(mean)  # one network of the same architecture
