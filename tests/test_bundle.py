"""Bundle verification: signature, checksums, manifest and ONNX I/O, on tiny real bundles."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest
from bundle_builder import build_bundle, make_keys, sign, write_manifest

from engines.bundle import find_bundles, load_bundle
from kiosk.errors import BundleError


@pytest.fixture
def keys(tmp_path: Path):
    return make_keys(tmp_path)


def test_a_signed_bundle_loads_with_its_contract(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "models", keys, kind="cxr")
    bundle = load_bundle(folder, keys.trusted_dir)
    assert bundle.task == "cxr-pneumonia" and bundle.version == "1.0.0"
    assert bundle.labels == ["pneumonia", "pneumothorax"]
    assert bundle.output_names == ["logits", "cam"]
    assert bundle.input_spec["channels"] == 1 and bundle.key_id == "test-key"
    assert len(bundle.sha256) == 64
    assert find_bundles(tmp_path / "models") == [folder]


def _refusal(folder: Path, trusted: Path) -> BundleError:
    with pytest.raises(BundleError) as caught:
        load_bundle(folder, trusted)
    assert folder.name in caught.value.message
    return caught.value


def test_a_tampered_model_file_is_refused(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "models", keys)
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    error = _refusal(folder, keys.trusted_dir)
    assert error.code == "bad_checksum" and "model.onnx" in error.message


def test_a_manifest_changed_after_signing_is_refused(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "models", keys)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["findings"][0]["threshold"] = 0.01  # a quieter threshold slipped in
    write_manifest(folder, manifest)
    assert _refusal(folder, keys.trusted_dir).code == "bad_signature"


def test_a_bundle_signed_by_an_unknown_key_is_refused(tmp_path: Path, keys) -> None:
    stranger = make_keys(tmp_path / "elsewhere", key_id="stranger")
    folder = build_bundle(tmp_path / "models", stranger)
    error = _refusal(folder, keys.trusted_dir)
    assert error.code == "untrusted_key" and "stranger" in error.message


def test_a_bundle_resigned_by_another_key_under_a_trusted_name_is_refused(tmp_path, keys) -> None:
    impostor = make_keys(tmp_path / "impostor", key_id="test-key")
    folder = build_bundle(tmp_path / "models", keys)
    sign(folder, impostor)
    assert _refusal(folder, keys.trusted_dir).code == "bad_signature"


def test_an_unsigned_bundle_is_refused(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "models", keys)
    (folder / "manifest.sig").unlink()
    assert _refusal(folder, keys.trusted_dir).code == "bundle_unsigned"


def test_a_garbled_signature_is_refused(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "models", keys)
    (folder / "manifest.sig").write_text(base64.b64encode(b"short").decode())
    assert _refusal(folder, keys.trusted_dir).code == "bad_signature"


def test_a_key_id_that_walks_out_of_the_trust_folder_is_refused(tmp_path: Path, keys) -> None:
    def escape(manifest: dict) -> None:
        manifest["key_id"] = "../trusted_keys/test-key"

    folder = build_bundle(tmp_path / "models", keys, edit=escape)
    assert _refusal(folder, keys.trusted_dir).code == "untrusted_key"


def test_a_manifest_whose_input_size_disagrees_with_the_graph_is_refused(tmp_path, keys) -> None:
    def bigger(manifest: dict) -> None:
        manifest["input"]["size"] = 64
        manifest["input"]["steps"][0]["size"] = 64

    folder = build_bundle(tmp_path / "models", keys, edit=bigger)
    error = _refusal(folder, keys.trusted_dir)
    assert error.code == "io_mismatch" and "image" in error.message


def test_a_manifest_with_more_labels_than_the_graph_outputs_is_refused(tmp_path, keys) -> None:
    def extra_label(manifest: dict) -> None:
        manifest["outputs"]["labels"].append("glaucoma")

    folder = build_bundle(tmp_path / "models", keys, edit=extra_label)
    assert _refusal(folder, keys.trusted_dir).code == "io_mismatch"


def test_a_declared_cam_output_the_graph_lacks_is_refused(tmp_path: Path, keys) -> None:
    def declare_cam(manifest: dict) -> None:
        manifest["outputs"]["cam"] = "cam"

    folder = build_bundle(tmp_path / "models", keys, with_cam=False, edit=declare_cam)
    assert _refusal(folder, keys.trusted_dir).code == "io_mismatch"


def test_an_unknown_preprocessing_step_is_refused_at_load(tmp_path: Path, keys) -> None:
    def unknown_step(manifest: dict) -> None:
        manifest["input"]["steps"].insert(0, {"op": "sharpen"})

    folder = build_bundle(tmp_path / "models", keys, edit=unknown_step)
    assert "sharpen" in _refusal(folder, keys.trusted_dir).message


def test_a_finding_for_a_label_the_model_lacks_is_refused(tmp_path: Path, keys) -> None:
    def stray_finding(manifest: dict) -> None:
        manifest["findings"][0]["label"] = "glaucoma"

    folder = build_bundle(tmp_path / "models", keys, edit=stray_finding)
    assert _refusal(folder, keys.trusted_dir).code == "bad_manifest"


def test_a_listed_file_that_is_missing_is_refused(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "models", keys)
    (folder / "MODEL_CARD.md").unlink()
    assert _refusal(folder, keys.trusted_dir).code == "bundle_incomplete"


def test_a_bundle_archive_is_verified_like_a_folder(tmp_path: Path, keys) -> None:
    folder = build_bundle(tmp_path / "src", keys)
    archive = tmp_path / "models" / "fundus-dr-1.0.0.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=folder.name)
    bundle = load_bundle(archive, keys.trusted_dir)
    assert bundle.task == "fundus-dr"
    assert bundle.sha256 == load_bundle(folder, keys.trusted_dir).sha256


def _archive(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=folder.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"{folder.name}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def test_an_archive_unpacks_into_one_folder_however_often_it_is_loaded(tmp_path: Path, keys) -> None:
    from engines.bundle import unpack_root

    archive = _archive(build_bundle(tmp_path / "src", keys), tmp_path / "models" / "fundus-dr-1.0.0.tar")
    before = set(unpack_root().glob("fundus-dr-1.0.0-*"))
    first = load_bundle(archive, keys.trusted_dir)
    second = load_bundle(archive, keys.trusted_dir)
    assert first.path == second.path and (second.path / "model.onnx").is_file()
    assert set(unpack_root().glob("fundus-dr-1.0.0-*")) - before == {first.path}


def test_a_refused_or_oversized_archive_leaves_nothing_behind(
    tmp_path: Path, keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engines.bundle as bundles

    folder = build_bundle(tmp_path / "src", keys)
    stranger = make_keys(tmp_path / "other", key_id="stranger")
    unsigned = _archive(build_bundle(tmp_path / "src2", stranger), tmp_path / "a" / "stranger.tar")
    crowded = _archive(folder, tmp_path / "b" / "crowded.tar",
                       {f"x{i}.txt": b"x" for i in range(bundles.TAR_MAX_FILES)})
    big = _archive(folder, tmp_path / "c" / "big.tar", {"pad.bin": b"\0" * 4096})
    monkeypatch.setattr(bundles, "TAR_MAX_BYTES", 4096)
    for archive, code in ((unsigned, "untrusted_key"), (crowded, "bad_archive"), (big, "bad_archive")):
        with pytest.raises(BundleError) as refused:
            load_bundle(archive, keys.trusted_dir)
        assert refused.value.code == code, refused.value.message
        assert not list(bundles.unpack_root().glob(f"{archive.stem}-*")), archive.name
