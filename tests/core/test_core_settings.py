"""Contexts, the config file, read-only precedence, secrets, themes and YAML errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from otelcockpit import settings
from otelcockpit.errors import ConfigError, UsageError
from otelcockpit.yamlio import load_yaml, load_yaml_text, where


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Write the config file OTELCOCKPIT_CONFIG points at; returns a writer."""
    path = tmp_path / "cfg" / "config.yaml"
    path.parent.mkdir()
    monkeypatch.setenv("OTELCOCKPIT_CONFIG", str(path))
    monkeypatch.delenv("NO_COLOR", raising=False)

    def write(text: str) -> Path:
        path.write_text(textwrap.dedent(text))
        return path

    write.path = path  # type: ignore[attr-defined]
    return write


FULL = """\
current_context: lab
theme: cockpit-light
contexts:
  demo:
    backend: demo
  grafana-prod:
    backend: fleet-management
    url: https://fleet-management-prod-001.grafana.net
    username_env: FM_ID
    password_env: FM_TOKEN
    production: true
    read_only: true
    theme: high-contrast
  lab:
    backend: opamp
    url: http://127.0.0.1:4321
    token_env: LAB_TOKEN
    refresh_seconds: 5
  staging:
    backend: fleet-management
    url: https://fm-staging.example
    auth:
      username_env: STG_ID
      password_env: STG_TOKEN
"""


def test_no_config_file_gives_the_demo(config) -> None:  # noqa: ANN001
    s = settings.resolve()
    assert s.backend == "demo" and s.context.name == "demo"
    assert not s.config_exists and s.config_file == config.path
    assert not s.read_only and s.theme == "cockpit-dark" and s.demo_seed == 7
    assert set(s.contexts) == {"demo"}


def test_otelcockpit_config_points_elsewhere(config, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    config(FULL)
    assert settings.config_path() == config.path
    assert settings.user_themes_dir() == config.path.parent / "themes"
    s = settings.resolve()
    assert s.config_exists and s.config_file == config.path
    monkeypatch.delenv("OTELCOCKPIT_CONFIG")
    assert settings.config_path().name == "config.yaml"
    assert settings.config_path() != config.path


def test_contexts_from_the_file(config) -> None:  # noqa: ANN001
    config(FULL)
    s = settings.resolve()
    assert s.context.name == "lab"  # current_context
    assert s.backend == "opamp" and s.url == "http://127.0.0.1:4321"
    assert s.context.token_env == "LAB_TOKEN" and s.refresh_seconds == 5
    assert s.theme == "cockpit-light"  # the file's theme: the context names none
    prod = settings.resolve(context="grafana-prod")
    assert prod.backend == "fleet-management" and prod.context.production
    assert (prod.context.username_env, prod.context.password_env) == ("FM_ID", "FM_TOKEN")
    assert prod.theme == "high-contrast"  # a context may name its theme
    stg = settings.resolve(context="staging")
    assert (stg.context.username_env, stg.context.password_env) == ("STG_ID", "STG_TOKEN")
    assert set(s.contexts) == {"demo", "grafana-prod", "lab", "staging"}


def test_credentials_come_from_the_named_variables(config, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    config(FULL)
    monkeypatch.setenv("FM_TOKEN", "s3cret")
    ctx = settings.resolve(context="grafana-prod").context
    assert ctx.secret("password") == "s3cret"
    assert ctx.secret("username") is None  # FM_ID is not set
    # Default variable names when a context names none.
    config("contexts:\n  fm:\n    backend: fleet-management\n    url: https://x\n")
    fm = settings.resolve(context="fm").context
    assert (fm.username_env, fm.password_env) == ("FLEET_MANAGEMENT_INSTANCE_ID", "FLEET_MANAGEMENT_TOKEN")


@pytest.mark.parametrize(
    ("file_ro", "ctx_ro", "flag", "expected"),
    [
        (None, None, False, False),
        (True, None, False, True),  # the file
        (True, False, False, False),  # then the context
        (False, True, False, True),
        (None, None, True, True),  # then --read-only
        (True, False, True, True),
        (False, False, True, True),
    ],
)
def test_read_only_precedence(
    config, file_ro: bool | None, ctx_ro: bool | None, flag: bool, expected: bool
) -> None:  # noqa: ANN001
    lines = ["current_context: c"]
    if file_ro is not None:
        lines.append(f"read_only: {str(file_ro).lower()}")
    lines += ["contexts:", "  c:", "    backend: demo"]
    if ctx_ro is not None:
        lines.append(f"    read_only: {str(ctx_ro).lower()}")
    config("\n".join(lines) + "\n")
    assert settings.resolve(read_only=flag).read_only is expected


@pytest.mark.parametrize(
    ("body", "key", "alternative"),
    [
        ("    token: abc123\n", "token", "token_env"),
        ("    password: hunter2\n", "password", "password_env"),
        ("    api_key: k\n", "api_key", "api_key_env"),
        ("    auth:\n      password: hunter2\n", "password", "password_env"),
    ],
)
def test_a_secret_in_the_config_is_refused(config, body: str, key: str, alternative: str) -> None:  # noqa: ANN001
    path = config("contexts:\n  prod:\n    backend: fleet-management\n    url: https://x\n" + body)
    with pytest.raises(ConfigError) as exc:
        settings.resolve(context="demo")
    msg = exc.value.message
    assert alternative in msg and key in msg and "prod" in msg
    assert msg.startswith(f"{path}:3")  # file and the context's line
    assert "hunter2" not in msg and "abc123" not in msg  # never echo the secret
    assert "\n" not in msg
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("contexts:\n  a:\n    backend: demo\n   bad: [\n", 4, "expected"),
        ("contexts:\n  a: {backend: demo\n", 2, ""),  # at the end: the last line, not one past it
        ("contexts:\n\ta: 1\n", 2, "cannot start any token"),
        ('theme: "unterminated\n', 1, ""),
    ],
)
def test_broken_yaml_is_one_line_with_file_and_line(config, text: str, line: int, what: str) -> None:  # noqa: ANN001
    path = config(text)
    with pytest.raises(ConfigError) as exc:
        settings.resolve()
    msg = exc.value.message
    assert msg.startswith(f"{path}:{line}: "), msg
    assert what in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- just\n- a list\n", "must be a mapping"),
        ("contexts: [a, b]\n", "contexts must be a mapping"),
        ("contexts:\n  x: 3\n", "context 'x' must be a mapping"),
        ("contexts:\n  x:\n    backend: kafka\n", "unknown backend 'kafka'"),
        ("contexts:\n  x:\n    read_only: sometimes\n", "read_only must be true or false"),
        ("contexts:\n  x:\n    production: 1\n", "production must be true or false"),
        ("read_only: yes please\n", "read_only must be true or false"),
        ("refresh_seconds: fast\n", "refresh_seconds must be a number"),
        ("demo_seed: seven\n", "demo_seed must be a whole number"),
        ("contexts:\n  x:\n    refresh_seconds: soon\n", "contexts.x.refresh_seconds must be a number"),
        ("contexts:\n  x:\n    auth: [a]\n", "auth must be a mapping"),
    ],
)
def test_bad_config_values_are_config_errors(config, text: str, fragment: str) -> None:  # noqa: ANN001
    path = config(text)
    with pytest.raises(ConfigError) as exc:
        settings.resolve()
    assert fragment in exc.value.message
    assert exc.value.message.startswith(str(path))


def test_unknown_context_lists_the_known_ones(config) -> None:  # noqa: ANN001
    config(FULL)
    with pytest.raises(UsageError) as exc:
        settings.resolve(context="prdo")
    msg = exc.value.message
    assert "unknown context 'prdo'" in msg
    assert "demo, grafana-prod, lab, staging" in msg
    assert str(config.path) in msg
    assert exc.value.exit_code == 2
    config("current_context: gone\n")
    with pytest.raises(UsageError, match="unknown context 'gone'"):
        settings.resolve()


def test_no_color_selects_monochrome(config, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    config(FULL)
    assert settings.resolve(context="grafana-prod").theme == "high-contrast"
    monkeypatch.setenv("NO_COLOR", "1")
    assert settings.resolve(context="grafana-prod").theme == "monochrome"
    assert settings.resolve().theme == "monochrome"
    assert settings.resolve(theme="cockpit-light").theme == "cockpit-light"  # an explicit --theme still wins
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: present and not empty
    assert settings.resolve(context="grafana-prod").theme == "high-contrast"
    assert settings.resolve(environ={"NO_COLOR": "x"}).theme == "monochrome"


def test_source_without_url_is_a_clear_error(config) -> None:  # noqa: ANN001
    for source in ("fleet-management", "opamp"):
        with pytest.raises(UsageError) as exc:
            settings.resolve(source=source)
        assert exc.value.message == f"the {source} backend needs a URL: --url URL or a context with url:"
    s = settings.resolve(source="opamp", url="http://127.0.0.1:4321")
    assert s.backend == "opamp" and s.url == "http://127.0.0.1:4321"
    assert s.context.token_env == "OTELCOCKPIT_OPAMP_TOKEN"
    assert settings.resolve(source="demo").backend == "demo"


def test_flags_override_the_context(config) -> None:  # noqa: ANN001
    config(FULL)
    s = settings.resolve(context="grafana-prod", url="https://other.example")
    assert s.url == "https://other.example" and s.backend == "fleet-management"
    # --source switches the backend and forgets the context's URL.
    with pytest.raises(UsageError, match="opamp backend needs a URL"):
        settings.resolve(context="grafana-prod", source="opamp")
    s = settings.resolve(context="lab", source="demo", demo_collectors=50, demo_seed=3)
    assert s.backend == "demo" and s.demo_collectors == 50 and s.demo_seed == 3


def test_example_config_is_valid(config) -> None:  # noqa: ANN001
    config(settings.EXAMPLE_CONFIG)
    s = settings.resolve()
    assert s.context.name == "demo"
    assert settings.resolve(context="grafana-prod").read_only is True


# --- yamlio ------------------------------------------------------------------------------------------


def test_yaml_line_numbers_and_errors(tmp_path: Path) -> None:
    data = load_yaml_text("a: 1\nb:\n  c: 2\nlist:\n  - x: 1\n", "t.yaml")
    assert data.line == 1 and data["b"].line == 3 and data["list"][0].line == 5
    assert where("t.yaml", data["b"]) == "t.yaml:3" and where("t.yaml", "plain") == "t.yaml"
    with pytest.raises(ConfigError, match=r"^t\.yaml:2: "):
        load_yaml_text("a: 1\nb: [\n", "t.yaml")
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"a: \xe9t\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(tmp_path)  # a directory
    # Safe loading: no Python objects.
    with pytest.raises(ConfigError):
        load_yaml_text("x: !!python/object/apply:os.system ['true']\n", "evil.yaml")
