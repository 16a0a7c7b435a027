"""The secrets key: where it comes from, that one server hands the same key to all its processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import Database, SecretBox, SecretStore, SecretUnreadable
from toolserver.config import Settings
from toolserver.http.auth import ensure_secrets_key, seal_secrets, with_secrets_key


def test_generated_once_into_the_state_directory(tmp_path: Path) -> None:
    key_file = tmp_path / "home" / "secrets.key"
    key, source = ensure_secrets_key(None, key_file)
    assert source == str(key_file) and key_file.stat().st_mode & 0o777 == 0o600
    assert ensure_secrets_key(None, key_file) == (key, str(key_file))
    SecretBox(key)  # well formed


def test_the_environment_wins_and_a_bad_key_stops_the_start(tmp_path: Path) -> None:
    given = SecretBox.new_key()
    assert ensure_secrets_key(given, tmp_path / "secrets.key") == (given, "TOOLSERVER_SECRETS_KEY")
    assert not (tmp_path / "secrets.key").exists()
    with pytest.raises(ValueError, match="32 bytes"):
        ensure_secrets_key("not-a-key", tmp_path / "secrets.key")
    (tmp_path / "secrets.key").write_text("garbage\n")
    with pytest.raises(ValueError, match="32 bytes"):
        ensure_secrets_key(None, tmp_path / "secrets.key")


def test_settings_carry_the_resolved_key_to_other_processes(tmp_path: Path) -> None:
    settings, source = with_secrets_key(Settings(home=tmp_path))
    assert source == str(tmp_path / "secrets.key")
    assert settings.secrets_key == (tmp_path / "secrets.key").read_text().strip()
    # What replicas and actors get (settings as JSON or as TOOLSERVER_* variables) holds the same key.
    assert Settings(**settings.model_dump(mode="json")).secrets_key == settings.secrets_key


def test_start_refuses_another_key_and_seals_old_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    db = Database(url)
    try:
        SecretStore(db).put("team-a", "old", "legacy")  # written before encryption
        first, _ = with_secrets_key(Settings(home=tmp_path / "one", database_url=url))
        seal_secrets(db, first)
        assert SecretStore(db, SecretBox(first.secrets_key or "")).get("team-a", "old") == "legacy"
        other, _ = with_secrets_key(Settings(home=tmp_path / "two", database_url=url))
        with pytest.raises(SecretUnreadable, match="another secrets key"):
            seal_secrets(db, other)
    finally:
        db.close()
