"""The configuration table: defaults, KIOSK_* overrides, errors, documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.config import Config, load_config, settings
from kiosk.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"
CONFIG_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_environment_overrides_defaults() -> None:
    config = load_config(env={"KIOSK_PORT": "9001", "KIOSK_SECURE_COOKIES": "off"})
    assert config.port == 9001
    assert config.secure_cookies is False
    assert load_config(env={}).port == Config().port


def test_malformed_value_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="KIOSK_PORT"):
        load_config(env={"KIOSK_PORT": "eighty"})
    with pytest.raises(ConfigError, match="boolean"):
        load_config(env={"KIOSK_SEND_ORIGINALS": "maybe"})


def test_prevalence_must_be_a_proportion() -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_config(env={"KIOSK_PREVALENCE": "fundus-dr=12"})
    with pytest.raises(ConfigError, match="TASK=share"):
        load_config(env={"KIOSK_PREVALENCE": "fundus-dr"})


def test_prevalence_is_one_setting_keyed_by_task() -> None:
    config = load_config(env={"KIOSK_PREVALENCE": "fundus-dr=0.2, cxr-adult=0.08"})
    assert config.prevalence_for("fundus-dr") == 0.2
    assert config.prevalence_for("cxr-adult") == 0.08
    assert config.prevalence_for("cxr-pneumonia") is None


def test_every_setting_has_help_and_is_documented() -> None:
    doc = CONFIG_DOC.read_text()
    for _name, env, _default, help_line in settings():
        assert help_line.strip(), env
        assert env in doc, f"{env} missing from docs/configuration.md (run: kiosk config)"


def test_kiosk_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("serve", "screen", "sync", "doctor", "config"):
        assert verb in out
