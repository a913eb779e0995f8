"""Checks shared by the assets' run config classes (``dg.Config``): kept in ``defs/`` so layer modules need not
import each other."""

from usdcop_assets.core.settings import ConfigError


def at_least(config, name: str, minimum: int = 1) -> int | None:
    """``config.name``, refused with a ``ConfigError`` naming the config class and field when it is set and below
    ``minimum`` (the same refusal as the environment variable's, core/settings.py); unset (``None``) passes."""
    value = getattr(config, name)
    if value is not None and value < minimum:
        raise ConfigError(f"{type(config).__name__}.{name}={value!r} must be at least {minimum}")
    return value
