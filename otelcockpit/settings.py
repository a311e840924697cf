"""Contexts (like kubeconfig), the config file and paths.

The config file is ``config.yaml`` in the platformdirs user config dir (``OTELCOCKPIT_CONFIG``
points elsewhere). It holds contexts; each names a backend, a URL, the *names* of the
environment variables that hold credentials (never the secrets), read-only, production, a
theme and a service inventory. Command-line flags override the context.

Read-only is resolved once here: the file's top-level ``read_only``, then the context's, then
``--read-only``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from otelcockpit.errors import ConfigError, UsageError
from otelcockpit.yamlio import load_yaml, where

APP_NAME = "otelcockpit"
BACKENDS = ("demo", "fleet-management", "opamp")

DEFAULT_ENV = {
    "fleet-management": {"username_env": "FLEET_MANAGEMENT_INSTANCE_ID", "password_env": "FLEET_MANAGEMENT_TOKEN"},
    "opamp": {"token_env": "OTELCOCKPIT_OPAMP_TOKEN"},
}


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    override = os.environ.get("OTELCOCKPIT_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def config_path() -> Path:
    override = os.environ.get("OTELCOCKPIT_CONFIG")
    return Path(override) if override else config_dir() / "config.yaml"


def user_themes_dir() -> Path:
    return config_path().parent / "themes"


def theme_names() -> set[str]:
    """The names of the built-in themes and of the user's (read from their files without building
    them: the CLI checks a theme name without loading the TUI)."""
    from otelcockpit.errors import CockpitError
    from otelcockpit.resources import themes_dir

    names: set[str] = set()
    for folder in (themes_dir(), user_themes_dir()):
        if not folder.is_dir():
            continue
        for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            try:
                data = load_yaml(file)
            except CockpitError:
                continue  # a broken user theme is reported by the TUI, and skipped
            if isinstance(data, Mapping) and isinstance(data.get("name"), str):
                names.add(data["name"])
    return names


def check_theme_name(name: str, origin: str) -> None:
    """An unknown theme is a configuration error (exit 2), whichever command runs."""
    known = theme_names()
    if name not in known:
        raise UsageError(f"{origin}unknown theme {name!r} (known: {', '.join(sorted(known))})")


@dataclass(frozen=True)
class Context:
    name: str
    backend: str = "demo"
    url: str = ""
    read_only: bool | None = None
    production: bool = False
    theme: str | None = None
    inventory: str | None = None
    # Names of environment variables holding credentials, never the values.
    username_env: str = ""
    password_env: str = ""
    token_env: str = ""
    refresh_seconds: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    # Who the operator is, recorded with every write (else OTELCOCKPIT_USER, else the OS user).
    identity: str = ""
    # The context's default rollout plan (a PlanOptions over the safe defaults; None: the safe ones).
    rollout_defaults: Any = None

    def secret(self, which: str) -> str | None:
        var = getattr(self, f"{which}_env")
        return os.environ.get(var) if var else None


@dataclass(frozen=True)
class Settings:
    """Everything resolved once: config file, then context, then flags."""

    context: Context
    contexts: Mapping[str, Context]
    config_file: Path
    config_exists: bool
    read_only: bool = False
    theme: str = "cockpit-dark"
    refresh_seconds: float = 2.0
    demo_collectors: int | None = None
    demo_seed: int = 7
    inventory: str | None = None
    min_size: tuple[int, int] = (80, 24)  # below this the TUI says "terminal too small"
    # phase number -> the share of its items that must pass (default: all of them)
    phase_thresholds: Mapping[int, float] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.context.backend

    @property
    def identity(self) -> str:
        """The person every write is recorded as: the context's ``identity``, else ``OTELCOCKPIT_USER``,
        else the user the process runs as."""
        return identity(self.context)

    @property
    def implicit_demo(self) -> bool:
        """The built-in demo, with no config file: a printed command needs nothing to reach it."""
        return self.context.name == "demo" and self.context.backend == "demo" and not self.config_exists

    @property
    def from_context(self) -> bool:
        """True when the context was chosen by name (config file), not made up from --source/--url."""
        return self.context.name in self.contexts and self.contexts[self.context.name] == self.context

    def command(self, *words: str) -> str:
        """A command line that reproduces this cockpit's backend: ``otelcockpit --context NAME ...``, or
        ``--source B --url U`` when the cockpit was not started from a context."""
        import shlex

        if self.from_context and self.context.name != "demo":
            head = ["otelcockpit", "--context", self.context.name]
        elif self.context.backend == "demo":
            head = ["otelcockpit", "--source", "demo"]
        else:
            head = ["otelcockpit", "--source", self.context.backend, "--url", self.context.url]
        return " ".join(shlex.quote(w) for w in (*head, *words))

    @property
    def url(self) -> str:
        return self.context.url


def _bool(value: Any, origin: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{origin}: {key} must be true or false, not {value!r}")


def _number(value: Any, origin: str, key: str, kind: type[int] | type[float] = float) -> Any:
    """A number from the config file, or a ConfigError naming the key (never a traceback)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{origin}: {key} must be {what}, not {value!r}")
    if kind is float and value <= 0:
        raise ConfigError(f"{origin}: {key} must be more than zero, not {value!r}")
    return kind(value)


def _context_from(name: str, raw: Any, origin: str) -> Context:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: context {name!r} must be a mapping")
    backend = str(raw.get("backend", "demo"))
    if backend not in BACKENDS:
        raise ConfigError(f"{origin}: context {name!r}: unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    env = dict(DEFAULT_ENV.get(backend, {}))
    auth = raw.get("auth") or {}
    if not isinstance(auth, Mapping):
        raise ConfigError(f"{origin}: context {name!r}: auth must be a mapping of *_env names")
    for key in ("username_env", "password_env", "token_env"):
        if key in auth:
            env[key] = str(auth[key])
        if key in raw:
            env[key] = str(raw[key])
    for secret_key in ("token", "password", "api_key"):
        if secret_key in raw or secret_key in auth:
            raise ConfigError(
                f"{origin}: context {name!r} holds a secret ({secret_key}); name the environment variable "
                f"instead ({secret_key}_env)"
                if secret_key != "token"
                else f"{origin}: context {name!r} holds a token; name its environment variable instead (token_env)"
            )
    read_only = raw.get("read_only")
    refresh = raw.get("refresh_seconds")
    known = {
        "backend",
        "url",
        "read_only",
        "production",
        "theme",
        "inventory",
        "auth",
        "username_env",
        "password_env",
        "token_env",
        "refresh_seconds",
        "identity",
        "rollout_defaults",
    }
    from otelcockpit.rollout.options import defaults_from  # not at the top: rollout imports settings

    try:
        rollout_defaults = defaults_from(raw.get("rollout_defaults"), f"{origin}: context {name!r}")
    except UsageError as exc:
        raise ConfigError(exc.message) from None
    identity_raw = raw.get("identity")
    if identity_raw is not None and (not isinstance(identity_raw, str) or not identity_raw.strip()):
        raise ConfigError(f"{origin}: context {name!r}: identity must be a non-empty name")
    return Context(
        name=name,
        backend=backend,
        url=str(raw.get("url", "") or ""),
        read_only=None if read_only is None else _bool(read_only, origin, f"contexts.{name}.read_only"),
        production=_bool(raw.get("production", False), origin, f"contexts.{name}.production"),
        theme=str(raw["theme"]) if raw.get("theme") else None,
        inventory=str(raw["inventory"]) if raw.get("inventory") else None,
        username_env=env.get("username_env", ""),
        password_env=env.get("password_env", ""),
        token_env=env.get("token_env", ""),
        refresh_seconds=_number(refresh, origin, f"contexts.{name}.refresh_seconds") if refresh is not None else None,
        options={k: v for k, v in raw.items() if k not in known},
        identity=str(identity_raw or "").strip(),
        rollout_defaults=rollout_defaults,
    )


def identity(context: Context | None = None) -> str:
    """Who is at the keyboard: the context's ``identity``, ``OTELCOCKPIT_USER``, or the OS user."""
    if context is not None and context.identity:
        return context.identity
    env = os.environ.get("OTELCOCKPIT_USER", "").strip()
    if env:
        return env
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name at all (a container without passwd entry)
        return os.environ.get("USER") or os.environ.get("USERNAME") or f"uid {os.getuid()}"


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the config file must be a mapping (contexts:, current_context:, ...)")
    return dict(data)


def resolve(
    *,
    context: str | None = None,
    source: str | None = None,
    url: str | None = None,
    read_only: bool = False,
    theme: str | None = None,
    demo_collectors: int | None = None,
    demo_seed: int | None = None,
    inventory: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ
    path = config_path()
    raw = load_config_file(path)
    origin = str(path)
    contexts_raw = raw.get("contexts") or {}
    if not isinstance(contexts_raw, Mapping):
        raise ConfigError(f"{where(path, raw)}: contexts must be a mapping of name to context")
    contexts = {str(n): _context_from(str(n), c, where(path, c) if c else origin) for n, c in contexts_raw.items()}
    if "demo" not in contexts:
        contexts["demo"] = Context(name="demo", backend="demo")

    name = context or raw.get("current_context") or ("demo" if source in (None, "demo") else None)
    if name is not None:
        if name not in contexts:
            known = ", ".join(sorted(contexts))
            raise UsageError(f"unknown context {name!r} (known: {known}); contexts live in {path}")
        ctx = contexts[name]
    else:
        backend = source or "demo"
        ctx = Context(name=backend, backend=backend, **DEFAULT_ENV.get(backend, {}))

    if source is not None and source != ctx.backend:
        if source not in BACKENDS:
            raise UsageError(f"unknown source {source!r} (one of {', '.join(BACKENDS)})")
        defaults = DEFAULT_ENV.get(source, {})
        ctx = replace(
            ctx,
            name=context or source,
            backend=source,
            url="",
            username_env=defaults.get("username_env", ""),
            password_env=defaults.get("password_env", ""),
            token_env=defaults.get("token_env", ""),
        )
    if url:
        if ctx.backend == "demo":
            # The demo has no URL: a URL without a backend that takes one would quietly show fake data.
            raise UsageError(
                "--url needs --source fleet-management or --source opamp (or a context whose backend takes a URL)"
            )
        ctx = replace(ctx, url=url)
    if ctx.backend != "demo" and not ctx.url:
        raise UsageError(f"the {ctx.backend} backend needs a URL: --url URL or a context with url:")

    ro = raw.get("read_only", False)
    ro = _bool(ro, origin, "read_only")
    if ctx.read_only is not None:
        ro = ctx.read_only
    if read_only:
        ro = True

    if theme:
        chosen_theme = theme
    elif "NO_COLOR" in env and env.get("NO_COLOR", "") != "":
        chosen_theme = "monochrome"
    else:
        chosen_theme = ctx.theme or str(raw.get("theme") or "cockpit-dark")

    if theme:
        check_theme_name(theme, "--theme: ")
    elif chosen_theme != "monochrome":
        check_theme_name(chosen_theme, f"{origin}: ")
    refresh = ctx.refresh_seconds or _number(raw.get("refresh_seconds", 2.0), origin, "refresh_seconds")
    min_size = _min_size(raw.get("min_size", "80x24"), origin)
    thresholds = _phase_thresholds(raw.get("phase_thresholds"), origin)
    seed = demo_seed if demo_seed is not None else _number(raw.get("demo_seed", 7), origin, "demo_seed", int)
    return Settings(
        context=ctx,
        contexts=contexts,
        config_file=path,
        config_exists=path.exists(),
        read_only=ro,
        theme=chosen_theme,
        refresh_seconds=refresh,
        demo_collectors=demo_collectors,
        demo_seed=seed,
        inventory=inventory or ctx.inventory or raw.get("inventory"),
        min_size=min_size,
        phase_thresholds=thresholds,
    )


def _min_size(value: Any, origin: str) -> tuple[int, int]:
    """``min_size: 80x24`` (the default); a tmux pane with a status line may want ``80x23``."""
    text = str(value).lower().replace(" ", "")
    width, sep, height = text.partition("x")
    if sep and width.isdigit() and height.isdigit() and int(width) >= 20 and int(height) >= 8:
        return int(width), int(height)
    raise ConfigError(f"{origin}: min_size must look like 80x24 (at least 20x8), not {value!r}")


def _phase_thresholds(value: Any, origin: str) -> dict[int, float]:
    """``phase_thresholds: {1: 95%, 2: 0.8}``: how many of a phase's items must pass before the next
    phase's work is not warned about (a fraction or a percentage; default 100%)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{origin}: phase_thresholds must map a phase (1-4) to a share, e.g. {{1: 95%}}")
    out: dict[int, float] = {}
    for k, v in value.items():
        if str(k) not in ("1", "2", "3", "4"):
            raise ConfigError(f"{origin}: phase_thresholds.{k}: the phases are 1 to 4")
        text = str(v).strip()
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ConfigError(
                f"{origin}: phase_thresholds.{k}: {v!r} is not a share above 0 and up to 1 (or 100%)"
            )
        out[int(str(k))] = share
    return out


EXAMPLE_CONFIG = """\
# otelcockpit config file. Secrets never go here: name the environment variables that hold them.
current_context: demo
read_only: false            # true makes every context read-only unless it says otherwise
theme: cockpit-dark
contexts:
  demo:
    backend: demo
  grafana-prod:
    backend: fleet-management
    url: https://fleet-management-prod-001.grafana.net
    username_env: FLEET_MANAGEMENT_INSTANCE_ID
    password_env: FLEET_MANAGEMENT_TOKEN
    production: true        # confirmations ask for the context name
    read_only: true
    theme: high-contrast
  lab:
    backend: opamp
    url: http://127.0.0.1:4321
    token_env: OTELCOCKPIT_OPAMP_TOKEN
"""
