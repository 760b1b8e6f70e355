"""Which endpoint and which credentials a run uses, the way the Huawei Cloud tools do it.

Precedence, first match wins:

1. ``--profile NAME``: that profile of the config file, and nothing else;
2. the environment: ``HUAWEICLOUD_SDK_AK`` + ``HUAWEICLOUD_SDK_SK`` (AK/SK signing, with
   ``HUAWEICLOUD_SDK_PROJECT_ID`` and, for temporary credentials,
   ``HUAWEICLOUD_SDK_SECURITY_TOKEN``), else ``BATCHPATCH_AUTH_TOKEN`` (an IAM token), else
   ``BATCHPATCH_IAM_USER`` + ``BATCHPATCH_IAM_PASSWORD`` + ``BATCHPATCH_IAM_DOMAIN`` (an IAM
   login);
3. the profile named ``default``, if the config file has one.

The endpoint: ``--endpoint``, else ``--region``, else the profile's ``endpoint`` or
``region``.  IAM: ``--iam-endpoint``, else the profile's ``iam_endpoint``, else
``HUAWEICLOUD_SDK_IAM_ENDPOINT``, else ``https://iam.REGION.myhuaweicloud.com``.

The project id (the tag API's paths need one): ``HUAWEICLOUD_SDK_PROJECT_ID`` with
credentials from the environment (any of the three kinds), the profile's ``project_id``
with a profile's; else looked up once per run, when a run needs tags, the official SDK's
way: ``GET {iam}/v3/projects?name=REGION`` signed with the same credentials
(``ImsClient.tag_project``).

A profile may give other regions' endpoints and project ids, for a sheet whose ``region``
column sends rows there (``routing``): a ``[profiles.NAME.regions.REGION]`` table with
``endpoint`` and/or ``project_id``.  The run's own region's table counts too: its
``endpoint`` replaces ``https://ims.REGION.myhuaweicloud.com`` (never ``--endpoint`` nor
the profile's own ``endpoint``), its ``project_id`` comes before the profile's.

A profile never holds a secret itself: it names environment variables (``ak_env``,
``sk_env``, ``token_env``, …) or a ``credentials_file`` that only its owner can read.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from platformdirs import user_config_dir

from batchpatch.auth import (
    TOKEN_VARIABLE,
    AkSkAuth,
    Auth,
    PasswordAuth,
    ProjectLookup,
    TokenAuth,
    mask,
)
from batchpatch.errors import Namer, OptionsError, Wording
from batchpatch.regions import iam_endpoint, ims_endpoint, region_of
from batchpatch.service import ApiResponse

ENV_AK, ENV_SK = "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"
ENV_PROJECT = "HUAWEICLOUD_SDK_PROJECT_ID"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
ENV_IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
ENV_IAM_USER, ENV_IAM_PASSWORD = "BATCHPATCH_IAM_USER", "BATCHPATCH_IAM_PASSWORD"
ENV_IAM_DOMAIN = "BATCHPATCH_IAM_DOMAIN"
ENV_CONFIG = "BATCHPATCH_CONFIG"

PROFILE_KEYS = frozenset(
    {
        "region",
        "endpoint",
        "iam_endpoint",
        "project_id",
        "ak_env",
        "sk_env",
        "security_token_env",
        "token_env",
        "iam_user_env",
        "iam_password_env",
        "iam_domain",
        "credentials_file",
        "ca_bundle",
        "regions",
    }
)
#: The keys of a profile's ``[profiles.NAME.regions.REGION]`` table.
REGION_KEYS = frozenset({"endpoint", "project_id"})
PROJECT_ID = re.compile(r"[0-9a-f]{32}")
FILE_KEYS = frozenset(
    {
        "access_key",
        "secret_key",
        "security_token",
        "token",
        "iam_user",
        "iam_password",
        "iam_domain",
    }
)


def default_config_path(environ: Mapping[str, str]) -> Path:
    configured = environ.get(ENV_CONFIG)
    if configured:
        return Path(configured).expanduser()
    return Path(user_config_dir("batchpatch")) / "config.toml"


@dataclass(frozen=True)
class Settings:
    """What the command line says; ``None`` where it says nothing."""

    endpoint: str | None = None
    region: str | None = None
    iam_endpoint: str | None = None
    profile: str | None = None
    config: Path | None = None
    ca_bundle: str | None = None
    allow_insecure_http: bool = False


@dataclass(frozen=True)
class RegionSettings:
    """One region's table of the profile in use: its endpoint and project id ("" where it
    gives none), and ``source``, the profile that says so (for ``whoami``)."""

    endpoint: str = ""
    project_id: str = ""
    source: str = ""


@dataclass(frozen=True)
class Target:
    """Where a run sends its requests and how it proves who it is."""

    endpoint: str
    iam_endpoint: str
    auth: Auth
    region: str = ""
    ca_bundle: str | None = None
    warnings: tuple[str, ...] = field(default=())
    #: The profile's per-region tables, by lower-case region (``RegionSettings``).
    regions: Mapping[str, RegionSettings] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """``whoami``'s lines, secrets masked."""
        lines = [
            f"endpoint: {self.endpoint}",
            f"iam endpoint: {self.iam_endpoint}",
            f"credentials: {self.auth.kind} from {self.auth.source}",
        ]
        if isinstance(self.auth, AkSkAuth):
            lines.append(f"access key: {mask(self.auth.access_key)}")
            lines.append(f"project id: {self.auth.project_id or '(none: the default project)'}")
            if self.auth.security_token:
                lines.append("security token: *** (temporary credentials)")
        elif isinstance(self.auth, PasswordAuth):
            lines.append(f"iam user: {self.auth.user} (account {self.auth.domain})")
            lines.append(f"project: {self.auth.project_id or self.auth.project_name}")
        else:
            lines.append("token: ***")
            if self.auth.project_id:
                lines.append(f"project id: {self.auth.project_id}")
        if self.ca_bundle:
            lines.append(f"ca bundle: {self.ca_bundle}")
        return lines


def resolve(settings: Settings, environ: Mapping[str, str] | None = None) -> Target:
    """The endpoint and credentials to use, by the precedence in this module's docstring."""
    environ = os.environ if environ is None else environ
    config_path = settings.config or default_config_path(environ)
    warnings: list[str] = []
    profile: dict[str, Any] = {}
    auth: Auth | None = None
    if settings.profile:
        profile = _profile(config_path, settings.profile)
    else:
        auth = _from_environment(environ, settings, warnings)
        if auth is None and config_path.is_file():
            profile = _profile(config_path, "default", required=False)
    endpoint = safe_endpoint(
        _endpoint(settings, profile), "endpoint", allow_insecure_http=settings.allow_insecure_http
    )
    region = settings.region or profile.get("region") or region_of(endpoint)
    iam = safe_endpoint(
        settings.iam_endpoint
        or profile.get("iam_endpoint")
        or environ.get(ENV_IAM_ENDPOINT)
        or iam_endpoint(region),
        "iam endpoint",
        allow_insecure_http=settings.allow_insecure_http,
    )
    if auth is None and profile:
        auth = _from_profile(profile, environ, region, iam, warnings)
    if auth is None:
        raise OptionsError(
            wording=lambda name: (
                f"no credentials: set {ENV_AK} and {ENV_SK} (AK/SK, recommended for unattended "
                f"runs), or {TOKEN_VARIABLE}, or "
                f"{ENV_IAM_USER}/{ENV_IAM_PASSWORD}/{ENV_IAM_DOMAIN},"
                f" or use {name('profile', 'NAME')} with a profile in {config_path} — never on "
                "the command line"
            )
        )
    if isinstance(auth, PasswordAuth):
        auth.iam_endpoint = iam
        auth.project_name = auth.project_name or region
        if not (auth.project_name or auth.project_id):
            raise OptionsError(
                wording=lambda name: (
                    f"an IAM login needs a project — give {name('region', '')} (the project "
                    "name) or set project_id in the profile"
                )
            )
    auth = with_project_lookup(auth, iam, region)
    check_header_values(auth)
    _check_project_id(auth)
    ca_bundle = settings.ca_bundle or profile.get("ca_bundle")
    if ca_bundle:
        _check_ca_bundle(str(ca_bundle))
    regions = profile.get("_regions", {})
    return Target(endpoint, iam, auth, region, ca_bundle, tuple(warnings), regions)


def with_project_lookup(auth: Auth, iam: str, region: str) -> Auth:
    """``auth`` told where to look its project id up (IAM, by region) when it has none:
    the tag API's paths carry a project id; ``ImsClient.tag_project`` resolves it once,
    and only when a run needs tags."""
    lookup = ProjectLookup(iam, region)
    if isinstance(auth, PasswordAuth):
        auth.project_lookup = lookup
        return auth
    if isinstance(auth, (AkSkAuth, TokenAuth)):
        return replace(auth, project_lookup=lookup)
    return auth


def safe_endpoint(endpoint: str, what: str, *, allow_insecure_http: bool = False) -> str:
    """``endpoint``, unless it carries a user name or password (refused, and never echoed)
    or is plain ``http://`` to a host other than this machine (refused unless allowed:
    signatures, tokens and IAM passwords would cross the network readable)."""
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise OptionsError(
            f"{what} is not an http(s) URL — write it like "
            "https://ims.ap-southeast-1.myhuaweicloud.com"
        ) from None
    shown = (
        f"{parts.scheme}://{f'[{host}]' if ':' in host else host}"
        + (f":{port}" if port is not None else "")
        + parts.path
    )
    if "@" in parts.netloc:
        raise OptionsError(
            f"{what} {shown} (as given) holds a user name or password before "
            "'@' — remove it; credentials come from the environment, a profile "
            "or a credentials file"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _loopback(host):
        raise OptionsError(
            parameter="allow_insecure_http",
            wording=lambda name: (
                f"{what} {shown} is plain http:// to another machine: credentials would cross "
                f"the network unencrypted — use https://, or pass "
                f"{name('allow_insecure_http', 'True')} if you really mean it"
            ),
        )
    return endpoint


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_header_values(auth: Auth) -> None:
    """Refuse credentials that aiohttp could not put in a header (a line break or another
    control character, often from a file saved with a stray newline); the value is never
    shown."""
    values: dict[str, str] = {}
    if isinstance(auth, AkSkAuth):
        values = {
            "access key": auth.access_key,
            "secret key": auth.secret_key,
            "project id": auth.project_id,
            "security token": auth.security_token,
        }
    elif isinstance(auth, TokenAuth):
        values = {"token": auth.token}
    elif isinstance(auth, PasswordAuth):
        values = {"project id": auth.project_id}
    for what, value in values.items():
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise OptionsError(
                f"{auth.source}: the {what} holds a control character (a line "
                "break?), which cannot be sent in an HTTP header — fix the "
                "value there"
            )


def _check_ca_bundle(path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as error:
        cause = getattr(error, "strerror", None) or error
        raise OptionsError.about(
            "ca_bundle",
            path,
            lambda named: (
                f"{named}: not a readable PEM file of CA certificates ({cause}) — check the path "
                "and the file"
            ),
        ) from None


def _endpoint(settings: Settings, profile: Mapping[str, Any]) -> str:
    if settings.endpoint:
        endpoint = settings.endpoint
    elif settings.region:
        endpoint = _regional(profile, settings.region).endpoint or ims_endpoint(settings.region)
    elif profile.get("endpoint"):
        endpoint = str(profile["endpoint"])
    elif profile.get("region"):
        region = str(profile["region"])
        endpoint = _regional(profile, region).endpoint or ims_endpoint(region)
    else:
        raise OptionsError(
            wording=lambda name: (
                f"no service to talk to — give {name('endpoint', 'URL')} or "
                f"{name('region', 'REGION')}, set endpoint or region in the profile, or use "
                f"{name('fake', '')} to try the embedded fake IMS"
            )
        )
    try:
        parts = urlsplit(endpoint)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        usable = False
    if not usable:
        shown = repr(endpoint) if "@" not in endpoint else "(a URL with '@', not shown)"
        raise OptionsError(
            f"endpoint {shown} is not an http(s) URL — write it like "
            "https://ims.ap-southeast-1.myhuaweicloud.com"
        )
    return endpoint


def _from_environment(
    environ: Mapping[str, str], settings: Settings, warnings: list[str]
) -> Auth | None:
    ak, sk = environ.get(ENV_AK, "").strip(), environ.get(ENV_SK, "").strip()
    if ak or sk:
        if not (ak and sk):
            missing = ENV_SK if ak else ENV_AK
            raise OptionsError(
                f"{missing} is not set while {ENV_AK if ak else ENV_SK} is — set both, or neither"
            )
        return AkSkAuth(
            ak,
            sk,
            environ.get(ENV_PROJECT, "").strip(),
            environ.get(ENV_SECURITY_TOKEN, "").strip(),
            source=f"environment variables {ENV_AK}/{ENV_SK}",
        )
    token = environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return TokenAuth(
            token,
            source=f"environment variable {TOKEN_VARIABLE}",
            project_id=environ.get(ENV_PROJECT, "").strip(),
        )
    user, password = environ.get(ENV_IAM_USER, ""), environ.get(ENV_IAM_PASSWORD, "")
    if user or password:
        domain = environ.get(ENV_IAM_DOMAIN, "")
        if not (user and password and domain):
            raise OptionsError(
                f"an IAM login needs {ENV_IAM_USER}, {ENV_IAM_PASSWORD} and "
                f"{ENV_IAM_DOMAIN} (the account name) — set all three"
            )
        return PasswordAuth(
            "",
            user,
            password,
            domain,
            project_name=settings.region or "",
            project_id=environ.get(ENV_PROJECT, "").strip(),
            source=f"environment variables {ENV_IAM_USER}/{ENV_IAM_PASSWORD}",
        )
    return None


def checked_project_id(value: str, where: str) -> str:
    """``value`` if it is a project id (32 lower-case hexadecimal digits) or empty (none
    configured); ``OptionsError`` (exit 2, nothing sent) naming ``where`` it came from
    otherwise: the tag API puts it in its URL paths, where ``../x`` or a space would
    address another resource or break the request."""
    if not value or PROJECT_ID.fullmatch(value):
        return value
    shown = ascii(value[:40]) + ("…" if len(value) > 40 else "")
    raise OptionsError(
        f"{where}: {shown} is not a project id (32 lower-case hexadecimal digits) — copy "
        "it from the console's My Credentials page (API Credentials, Projects)"
    )


def _check_project_id(auth: Auth) -> None:
    """The configured project id's format, naming where it came from (the environment, or
    the profile's ``project_id``; a profile's region tables were checked as they were read)."""
    where = (
        f"environment variable {ENV_PROJECT}"
        if auth.source.startswith("environment")
        else f"{auth.source}: project_id"
    )
    checked_project_id(auth.project_id, where)


def _profile(path: Path, name: str, *, required: bool = True) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionsError(
            wording=lambda named: (
                f"{path}: no config file — create it with a [profiles.{name}] table, or point "
                f"BATCHPATCH_CONFIG / {named('config', '')} at yours"
            )
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise OptionsError(f"{path}: not valid TOML ({error}) — fix the file") from None
    profiles = document.get("profiles", {})
    if name not in profiles or not isinstance(profiles[name], dict):
        if not required:
            return {}
        known = ", ".join(sorted(profiles)) or "none"
        raise OptionsError(f"{path}: no profile {name!r} — profiles there: {known}")
    profile = dict(profiles[name])
    unknown = sorted(set(profile) - PROFILE_KEYS)
    if unknown:
        raise OptionsError(
            f"{path}: profile {name!r} has unknown keys {', '.join(unknown)} — use "
            f"{', '.join(sorted(PROFILE_KEYS))}; secrets belong in the environment or a "
            "credentials_file, never in the profile"
        )
    profile["_name"] = f"profile {name!r} in {path}"
    profile["_regions"] = _region_tables(profile.get("regions", {}), profile["_name"], name)
    return profile


def _regional(profile: Mapping[str, Any], region: str) -> RegionSettings:
    """The profile's table for ``region`` (an empty one when it has none)."""
    tables: Mapping[str, RegionSettings] = profile.get("_regions", {})
    return tables.get(region.strip().lower(), RegionSettings())


def _region_tables(tables: object, where: str, name: str) -> dict[str, RegionSettings]:
    """A profile's ``regions`` tables, checked: only ``endpoint`` (an http(s) URL) and
    ``project_id`` (32 hexadecimal digits) in each, both strings."""
    shape = f"[profiles.{name}.regions.REGION] tables with endpoint and project_id"
    if not isinstance(tables, dict):
        raise OptionsError(f"{where}: regions is not a table — write it as {shape}")
    found: dict[str, RegionSettings] = {}
    for region, table in tables.items():
        at = f"{where}, region {region}"
        if not isinstance(table, dict):
            raise OptionsError(f"{at}: not a table — write it as {shape}")
        unknown = sorted(set(table) - REGION_KEYS)
        if unknown:
            raise OptionsError(
                f"{at}: unknown keys {', '.join(unknown)} — use {', '.join(sorted(REGION_KEYS))}"
            )
        endpoint, project = table.get("endpoint", ""), table.get("project_id", "")
        if not isinstance(endpoint, str) or (endpoint and not endpoint.startswith("http")):
            raise OptionsError(
                f"{at}: endpoint is not an http(s) URL — write it like "
                f'endpoint = "https://ims.{region}.myhuaweicloud.com"'
            )
        if not isinstance(project, str) or (project and not PROJECT_ID.fullmatch(project)):
            raise OptionsError(
                f"{at}: project_id is not a project id (32 hexadecimal digits) — copy it "
                "from the console's My Credentials page"
            )
        found[str(region).strip().lower()] = RegionSettings(endpoint, project, where)
    return found


def _from_profile(
    profile: Mapping[str, Any],
    environ: Mapping[str, str],
    region: str,
    iam: str,
    warnings: list[str],
) -> Auth:
    where = profile["_name"]
    values: dict[str, str] = {}
    if profile.get("credentials_file"):
        values = _credentials_file(Path(str(profile["credentials_file"])).expanduser(), warnings)
        where = f"{where}, file {profile['credentials_file']}"
    for key, variable in (
        ("access_key", "ak_env"),
        ("secret_key", "sk_env"),
        ("security_token", "security_token_env"),
        ("token", "token_env"),
        ("iam_user", "iam_user_env"),
        ("iam_password", "iam_password_env"),
    ):
        if profile.get(variable):
            name = str(profile[variable])
            if not environ.get(name):
                raise OptionsError(
                    f"{where}: {variable} names {name}, which is not set — export {name}"
                )
            values[key] = environ[name].strip()
    values.setdefault("iam_domain", str(profile.get("iam_domain", "")))
    project = _regional(profile, region).project_id or str(profile.get("project_id", ""))
    if values.get("access_key") and values.get("secret_key"):
        return AkSkAuth(
            values["access_key"],
            values["secret_key"],
            project,
            values.get("security_token", ""),
            source=where,
        )
    if values.get("token"):
        return TokenAuth(values["token"], source=where, project_id=project)
    if values.get("iam_user") and values.get("iam_password") and values.get("iam_domain"):
        return PasswordAuth(
            iam,
            values["iam_user"],
            values["iam_password"],
            values["iam_domain"],
            project_name=region,
            project_id=project,
            source=where,
        )
    raise OptionsError(
        f"{where}: no complete credentials — give ak_env and sk_env, or "
        "token_env, or iam_user_env, iam_password_env and iam_domain, or a "
        "credentials_file holding them"
    )


def _credentials_file(path: Path, warnings: list[str]) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionsError(f"{path}: no such credentials file — create it (mode 600)") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise OptionsError(
            f"{path}: not a readable TOML credentials file ({type(error).__name__}) — fix the file"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(
            f"{path} can be read by others (mode {stat.filemode(mode)}) — run: chmod 600 {path}"
        )
    unknown = sorted(set(document) - FILE_KEYS)
    if unknown:
        raise OptionsError(
            f"{path}: unknown keys {', '.join(unknown)} — use {', '.join(sorted(FILE_KEYS))}"
        )
    return {key: str(value).strip() for key, value in document.items()}


# --- the project id of the tag API ---------------------------------------------------------


class IamCaller(Protocol):
    """What the project lookup needs of the HTTP client: one authenticated GET to IAM."""

    async def iam_get(self, url: str) -> ApiResponse: ...


def _set_project_id(name: Namer) -> str:
    return (
        f"set {ENV_PROJECT} (with credentials from the environment) or project_id in the "
        f"profile, or give {name('region', 'REGION')} so it can be looked up in IAM"
    )


async def lookup_project(
    caller: IamCaller, auth: Auth, *, how_to_set: Wording = _set_project_id
) -> str:
    """The run's project id the official SDK's way: the configured one, else
    ``GET {iam}/v3/projects?name=REGION`` with the run's credentials; exactly one project
    must answer.  Raises ``OptionsError`` (exit 2) naming how to set it otherwise
    (``how_to_set``: another region's project id is set elsewhere, ``routing``)."""
    if auth.project_id:
        return checked_project_id(auth.project_id, f"{auth.source}: the project id")
    lookup = auth.project_lookup
    if lookup is None or not lookup.region:
        raise OptionsError(
            wording=lambda name: f"the tag API needs a project id — {_set_project_id(name)}"
        )
    url = f"{lookup.iam_endpoint.rstrip('/')}/v3/projects?name={quote(lookup.region, safe='')}"
    answer = await caller.iam_get(url)
    found = _project_ids(answer, lookup.region)
    if found is None:
        what = f"HTTP {answer.status}" if answer.status is not None else "no answer"
        detail = " ".join(part for part in (what, answer.error_code, answer.message) if part)
        raise OptionsError(
            wording=lambda name: (
                f"cannot look up the project id of region {lookup.region} in IAM at "
                f"{lookup.iam_endpoint} ({detail}) — {how_to_set(name)}"
            )
        )
    if len(found) != 1:
        listed = ", ".join(ascii(project)[1:-1] for project in found) or "none"
        raise OptionsError(
            wording=lambda name: (
                f"IAM at {lookup.iam_endpoint} lists {len(found)} projects named "
                f"{lookup.region} ({listed}) — choose one: set {ENV_PROJECT} or project_id "
                "in the profile"
            )
        )
    where = f"IAM at {lookup.iam_endpoint}, the project of region {lookup.region}"
    return checked_project_id(found[0], where)


def _project_ids(answer: ApiResponse, region: str) -> list[str] | None:
    """The ids of the projects named ``region`` in a KeystoneListProjects answer; None
    when the answer is not one."""
    projects = answer.body.get("projects") if answer.ok and isinstance(answer.body, dict) else None
    if not isinstance(projects, list):
        return None
    return [
        str(project["id"])
        for project in projects
        if isinstance(project, dict)
        and isinstance(project.get("id"), str)
        and project["id"]
        and project.get("name", region) == region
    ]
