"""Where a Glance run sends and how it proves who it is, the way OpenStack's tools do it.

First match wins:

1. ``--os-cloud NAME`` (or ``OS_CLOUD``): that cloud of the first ``clouds.yaml`` holding it,
   searched where openstacksdk searches: ``$OS_CLIENT_CONFIG_FILE``, ``./clouds.yaml``,
   ``~/.config/openstack/clouds.yaml``, ``/etc/openstack/clouds.yaml``.  Its ``auth`` gives a
   token (``auth_type: token`` or ``v3token``), a password login (``auth_url``, ``username``,
   ``password``, ``project_name``/``project_id``, ``user_domain_name``,
   ``project_domain_name``) or nothing (``auth_type: none``);
2. the environment: ``OS_AUTH_TOKEN`` (or ``OS_TOKEN``), sent as ``X-Auth-Token``; else a
   Keystone v3 password login from ``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``,
   ``OS_PROJECT_NAME`` (or ``OS_PROJECT_ID``), ``OS_USER_DOMAIN_NAME`` and
   ``OS_PROJECT_DOMAIN_NAME`` (both ``Default`` when unset, as Keystone's own default);
3. no credentials: a Glance without Keystone.

The Glance endpoint: ``--endpoint``, else the cloud's ``image_endpoint_override``, else
``OS_IMAGE_URL``.  (The service catalog is not read.)  Secrets are never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchpatch.auth import Auth, NoAuth, PasswordAuth, TokenAuth
from batchpatch.credentials import Settings, Target, check_header_values, safe_endpoint
from batchpatch.errors import OptionsError

TOKEN_VARIABLES = ("OS_AUTH_TOKEN", "OS_TOKEN")
DEFAULT_DOMAIN = "Default"


def clouds_files(environ: Mapping[str, str]) -> list[Path]:
    """Where ``clouds.yaml`` is looked for, in openstacksdk's order."""
    files = [Path(environ["OS_CLIENT_CONFIG_FILE"])] if environ.get("OS_CLIENT_CONFIG_FILE") else []
    home = Path(environ.get("HOME", str(Path.home())))
    return [
        *files,
        Path.cwd() / "clouds.yaml",
        home / ".config" / "openstack" / "clouds.yaml",
        Path("/etc/openstack/clouds.yaml"),
    ]


def load_cloud(name: str, environ: Mapping[str, str]) -> tuple[dict[str, Any], Path]:
    """The cloud ``name`` of the first ``clouds.yaml`` that has it, and that file."""
    searched = clouds_files(environ)
    for path in searched:
        if not path.is_file():
            continue
        clouds = _clouds_of(path)
        if name in clouds:
            cloud = clouds[name]
            if not isinstance(cloud, dict):
                raise OptionsError(f"{path}: cloud {name!r} is not a mapping — fix the file")
            return cloud, path
    where = ", ".join(str(path) for path in searched)
    raise OptionsError(f"--os-cloud {name}: no such cloud in {where} — check the name")


def _clouds_of(path: Path) -> dict[str, Any]:
    import yaml  # only for --os-cloud: not at every start-up

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise OptionsError(f"{path}: cannot read it ({error}) — check the file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise OptionsError(f"{path}: not valid YAML{at} — fix the file") from None
    clouds = document.get("clouds") if isinstance(document, dict) else None
    return clouds if isinstance(clouds, dict) else {}


def _text(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    return "" if value is None else str(value)


def keystone_root(auth_url: str) -> str:
    """The Keystone URL without its ``/v3`` (``PasswordAuth`` appends ``/v3/auth/tokens``)."""
    return auth_url.rstrip("/").removesuffix("/v3")


def password_auth(values: Mapping[str, Any], source: str) -> PasswordAuth:
    """A Keystone v3 password login from clouds.yaml-style keys (``auth_url``, ``username``…)."""
    user_domain = _text(values, "user_domain_name") or DEFAULT_DOMAIN
    auth = PasswordAuth(
        keystone_root(_text(values, "auth_url")),
        _text(values, "username"),
        _text(values, "password"),
        user_domain,
        project_name=_text(values, "project_name"),
        project_id=_text(values, "project_id"),
        project_domain=_text(values, "project_domain_name") or DEFAULT_DOMAIN,
        source=source,
        kind="keystone password",
    )
    missing = [key for key in ("username", "password") if not _text(values, key)]
    if not (auth.project_name or auth.project_id):
        missing.append("project_name")
    if missing:
        raise OptionsError(f"{source}: a Keystone login needs {', '.join(missing)} — set them")
    return auth


_ENVIRONMENT_KEYS = {
    "auth_url": "OS_AUTH_URL",
    "username": "OS_USERNAME",
    "password": "OS_PASSWORD",
    "project_name": "OS_PROJECT_NAME",
    "project_id": "OS_PROJECT_ID",
    "user_domain_name": "OS_USER_DOMAIN_NAME",
    "project_domain_name": "OS_PROJECT_DOMAIN_NAME",
}


def _from_environment(environ: Mapping[str, str]) -> Auth | None:
    for variable in TOKEN_VARIABLES:
        if environ.get(variable):
            return TokenAuth(environ[variable], source=variable)
    if environ.get("OS_AUTH_URL"):
        values = {key: environ.get(variable, "") for key, variable in _ENVIRONMENT_KEYS.items()}
        return password_auth(values, "the OS_* environment variables")
    return None


def _from_cloud(cloud: Mapping[str, Any], source: str) -> Auth:
    auth_type = _text(cloud, "auth_type") or "password"
    values = cloud.get("auth") or {}
    if not isinstance(values, dict):
        raise OptionsError(f"{source}: auth is not a mapping — fix the file")
    if auth_type == "none":
        return NoAuth(source=source)
    if auth_type in ("token", "v3token", "admin_token"):
        if not _text(values, "token"):
            raise OptionsError(f"{source}: auth_type {auth_type} needs auth.token — set it")
        return TokenAuth(_text(values, "token"), source=source)
    if auth_type not in ("password", "v3password"):
        raise OptionsError(
            f"{source}: auth_type {auth_type!r} is not supported — use password, token or none"
        )
    return password_auth(values, source)


def resolve_glance(
    settings: Settings, os_cloud: str | None = None, environ: Mapping[str, str] | None = None
) -> Target:
    """The Glance endpoint and credentials, by the precedence in the module docstring."""
    environ = os.environ if environ is None else environ
    cloud: dict[str, Any] = {}
    cloud_name = os_cloud or environ.get("OS_CLOUD")
    auth: Auth | None = None
    if cloud_name:
        cloud, path = load_cloud(cloud_name, environ)
        auth = _from_cloud(cloud, f"cloud {cloud_name!r} of {path}")
    else:
        auth = _from_environment(environ)
    auth = auth or NoAuth()
    endpoint = (
        settings.endpoint or _text(cloud, "image_endpoint_override") or environ.get("OS_IMAGE_URL")
    )
    if not endpoint:
        raise OptionsError(
            "no Glance endpoint: give --endpoint URL (e.g. http://127.0.0.1:9292), or "
            "image_endpoint_override in clouds.yaml, or set OS_IMAGE_URL"
        )
    insecure = settings.allow_insecure_http
    endpoint = safe_endpoint(endpoint.rstrip("/"), "endpoint", allow_insecure_http=insecure)
    keystone = ""
    if isinstance(auth, PasswordAuth):
        if not auth.iam_endpoint:
            raise OptionsError(f"{auth.source}: a Keystone login needs auth_url (OS_AUTH_URL)")
        keystone = safe_endpoint(auth.iam_endpoint, "auth url", allow_insecure_http=insecure)
    check_header_values(auth)
    ca_bundle = settings.ca_bundle or _text(cloud, "cacert") or None
    return Target(endpoint, keystone, auth, "", ca_bundle)
