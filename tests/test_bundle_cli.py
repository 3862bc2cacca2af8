"""``kiosk models``: list/verify bundles, describe what runs, write a Triton model repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_builder import build_bundle, make_keys
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from engines.bundle import load_bundle, sha256_file
from engines.triton_engine import SHA_PARAMETER
from kiosk.cli import main


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="fundus")
    build_bundle(tmp_path / "models", keys, kind="cxr")
    for name, value in {"KIOSK_MODELS_DIR": tmp_path / "models", "KIOSK_TRUSTED_KEYS":
                        keys.trusted_dir, "KIOSK_DATA_DIR": tmp_path / "data",
                        "KIOSK_SANDBOX_WORKERS": 0}.items():
        monkeypatch.setenv(name, str(value))
    return tmp_path / "models"


def test_list_verifies_every_bundle(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["id"] for e in entries] == ["cxr-pneumonia", "fundus-dr"]
    assert all(e["signature"] == "verified" and e["key_id"] == "test-key" for e in entries)


def test_a_tampered_bundle_makes_list_fail_and_say_why(models, capsys) -> None:
    with (models / "fundus-dr-1.0.0" / "model.onnx").open("ab") as handle:
        handle.write(b"x")
    assert main(["models"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "fundus-dr-1.0.0" in out and "altered" in out
    assert "verified cxr-pneumonia 1.0.0" in out


def test_verify_a_given_path(models: Path, capsys) -> None:
    assert main(["models", "verify", str(models / "cxr-pneumonia-1.0.0")]) == 0
    assert capsys.readouterr().out.startswith("verified cxr-pneumonia")


def test_describe_shows_the_back_end_really_running(models, capsys) -> None:
    assert main(["models", "describe"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["backend"] for e in entries} == {"onnxruntime-cpu"}
    assert all(e["warmup_ms"] > 0 and e["signature"]["status"] == "verified" for e in entries)


def _parsed(path: Path) -> model_config_pb2.ModelConfig:
    """Parse config.pbtxt with Triton's own ModelConfig schema (as tritonserver does)."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_the_triton_repository_matches_each_bundle(models: Path, tmp_path: Path, capsys) -> None:
    repo = tmp_path / "repo"
    assert main(["models", "triton-repo", str(repo), "--tensorrt-accelerator"]) == 0
    for task in ("fundus-dr", "cxr-pneumonia"):
        bundle = load_bundle(models / f"{task}-1.0.0", models.parent / "trusted_keys")
        config = _parsed(repo / task / "config.pbtxt")
        assert config.name == task and config.backend == "onnxruntime"
        assert config.max_batch_size == 8 and config.dynamic_batching.max_queue_delay_microseconds
        [image] = config.input
        spec = bundle.input_spec
        assert image.name == "image" and list(image.dims) == [spec["channels"], spec["size"],
                                                              spec["size"]]
        assert image.data_type == model_config_pb2.TYPE_FP32
        outputs = {o.name: list(o.dims) for o in config.output}
        labels = len(bundle.labels)
        assert outputs == {"logits": [labels], "cam": [labels, 8, 8]}
        assert config.parameters[SHA_PARAMETER].string_value == bundle.sha256
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt"
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert sha256_file(repo / task / "1" / "model.onnx") == bundle.manifest["files"]["model.onnx"]


def test_the_tensorrt_plan_repository_carries_its_build_command(models, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert main(["models", "triton-repo", str(repo), "--backend", "tensorrt"]) == 0
    config = _parsed(repo / "fundus-dr" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    script = (repo / "fundus-dr" / "build-plan.sh").read_text()
    assert "--saveEngine=1/model.plan" in script and "--maxShapes=image:8x3x32x32" in script
    assert (repo / "fundus-dr" / "model.onnx").is_file()
    assert not (repo / "fundus-dr" / "1" / "model.onnx").exists()
