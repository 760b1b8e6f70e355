"""``batchpatch fake-ims``: serve the fake IMS API for demos and end-to-end tests.

The first stdout line is ``URL http://HOST:PORT`` once the server listens, so a parent process
can start it on port 0 and read where it went; it then serves until SIGINT or SIGTERM.
The fault and authentication options map one to one onto FakeConfig's fields, which say
what they do.

Secrets never come from the command line: ``--token-env``, ``--ak-env``, ``--sk-env``,
``--iam-user-env`` and ``--iam-password-env`` name environment variables, and
``--credentials-file`` names a file holding an AK/SK pair in either of two forms:

- ``key=value`` lines, ``ak=…`` and ``sk=…`` (blank lines and ``#`` comments skipped,
  spaces around ``=`` allowed), e.g. ``printf 'ak=%s\nsk=%s\n' "$AK" "$SK" > creds``;
- the ``credentials.csv`` Huawei Cloud's console downloads: a header row naming
  ``Access Key Id`` and ``Secret Access Key``, then one row.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, NoReturn

from batchpatch.fake.config import FakeConfig
from batchpatch.fake.harness import serving_fake
from batchpatch.fake.store import ImageFileError, ImageStore, load_images

_PROBABILITY_FLAGS = [
    ("--error-500", "answer a PATCH or GET 500 IMG.0061, applying nothing"),
    ("--error-503", "answer a PATCH or GET 503 APIGW.0201, applying nothing"),
    ("--flow-control", "answer a PATCH 400 IMG.0060, applying nothing"),
    ("--reset-before", "close a PATCH's connection unanswered, applying nothing"),
    ("--reset-after", "apply a PATCH, then close its connection unanswered"),
    ("--hang", "never answer a PATCH (until the client gives up or the server stops)"),
    ("--bad-gateway-after", "apply a PATCH, then answer 502 APIGW.0201"),
    ("--gateway-timeout-after", "apply a PATCH, then answer 504 APIGW.0201"),
]


class _Parser(argparse.ArgumentParser):
    """Bad options are ``Error: …`` and exit status 2, as in the main CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"Error: {message} — see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batchpatch fake-ims",
        description="Serve a fake Huawei Cloud IMS API (UpdateImage and ListImages) "
        "over the images in a JSON file.",
    )
    parser.add_argument(
        "--images",
        required=True,
        metavar="FILE",
        help='JSON file: a list of image objects, or {"images": [...]}',
    )
    parser.add_argument("--port", type=_port, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="delay added to every PATCH (default 0)",
    )
    parser.add_argument(
        "--token-env",
        metavar="NAME",
        help="accept the X-Auth-Token held by this environment variable (besides tokens the "
        "fake's IAM issued); with no credential set, any token passes",
    )
    auth = parser.add_argument_group(
        "authentication",
        "secrets come from environment variables or a file, never from the command line; "
        "with no credential set, any token and any well-formed signature pass",
    )
    auth.add_argument(
        "--ak-env",
        metavar="NAME",
        help="verify the AK/SK signatures of the access key in this variable (with --sk-env)",
    )
    auth.add_argument(
        "--sk-env", metavar="NAME", help="the environment variable holding the secret key"
    )
    auth.add_argument(
        "--credentials-file",
        metavar="PATH",
        help="read the AK/SK from this file instead: 'ak=…' and 'sk=…' lines, or Huawei "
        "Cloud's credentials.csv",
    )
    auth.add_argument(
        "--project-id",
        metavar="ID",
        help="refuse (403 APIGW.0310) a signed X-Project-Id other than this; scope tokens to it",
    )
    auth.add_argument(
        "--max-skew",
        type=_positive_seconds,
        default=900.0,
        metavar="SECONDS",
        help="how far X-Sdk-Date may be from the fake's clock (default 900)",
    )
    auth.add_argument(
        "--clock-offset",
        type=_signed_seconds,
        default=0.0,
        metavar="SECONDS",
        help="run the fake's clock this far ahead of real UTC time (negative: behind; "
        "default 0); it dates responses and judges X-Sdk-Date",
    )
    auth.add_argument(
        "--iam-user-env",
        metavar="NAME",
        help="issue IAM tokens (POST /v3/auth/tokens) to the user named in this variable",
    )
    auth.add_argument(
        "--iam-password-env",
        metavar="NAME",
        help="the environment variable holding that user's password",
    )
    auth.add_argument(
        "--iam-domain", metavar="NAME", help="the user's account (domain) name (default: any)"
    )
    auth.add_argument(
        "--token-lifetime",
        type=_positive_seconds,
        default=86400.0,
        metavar="SECONDS",
        help="how long an issued token lives on the fake's clock (default 86400)",
    )
    faults = parser.add_argument_group(
        "faults", "probabilities P are in [0, 1]; the PATCH ones must sum to at most 1"
    )
    faults.add_argument(
        "--jitter",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="a further random delay of 0..SECONDS on every PATCH (default 0)",
    )
    for flag, effect in _PROBABILITY_FLAGS:
        faults.add_argument(flag, type=_probability, default=0.0, metavar="P", help=effect)
    faults.add_argument(
        "--rate-limit",
        type=_rate,
        metavar="N",
        help="admit N requests (PATCH and GET) per sliding second; answer 429 APIGW.0308 above",
    )
    faults.add_argument(
        "--token-bucket",
        type=_rate,
        metavar="N",
        help="also (or instead) a token bucket of N requests refilled at N/s; 429 when empty",
    )
    faults.add_argument(
        "--retry-after",
        type=_seconds,
        metavar="SECONDS",
        help="send Retry-After (whole seconds, rounded up) with every 429",
    )
    faults.add_argument(
        "--seed", type=_integer, metavar="N", help="seed the random faults and the jitter"
    )
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = ImageStore(load_images(args.images))
    except ImageFileError as exc:
        return _fail(f"{exc}. Fix the file or point --images at another one.")
    try:
        config = config_from_args(args, os.environ)
    except OptionsError as exc:
        return _fail(str(exc))
    try:
        asyncio.run(_serve(store, config, args.host, args.port))
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", 1)
    return 0


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> FakeConfig:
    """The FakeConfig the parsed options ask for, reading secrets from ``environ`` and files.

    Raises OptionsError saying what is wrong and how to fix it (never showing a secret).
    """
    creds = _credentials(args, environ)
    try:
        return FakeConfig(
            token=creds.token,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            iam_user=creds.iam_user,
            iam_password=creds.iam_password,
            latency=args.latency,
            jitter=args.jitter,
            error_500=args.error_500,
            error_503=args.error_503,
            flow_control=args.flow_control,
            rate_limit=args.rate_limit,
            token_bucket=args.token_bucket,
            retry_after=args.retry_after,
            reset_before=args.reset_before,
            reset_after=args.reset_after,
            hang=args.hang,
            bad_gateway_after=args.bad_gateway_after,
            gateway_timeout_after=args.gateway_timeout_after,
            seed=args.seed,
            max_skew=args.max_skew,
            clock_offset=args.clock_offset,
            project_id=args.project_id,
            iam_domain=args.iam_domain,
            token_lifetime=args.token_lifetime,
        )
    except ValueError as exc:
        raise OptionsError(f"{exc}. Lower the fault options.") from None


class OptionsError(ValueError):
    """Options that cannot work together, or a secret that cannot be read."""


class _Secrets(NamedTuple):
    token: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    iam_user: str | None = None
    iam_password: str | None = None

    def __repr__(self) -> str:  # never show a secret
        return "<_Secrets>"


def _credentials(args: argparse.Namespace, environ: Mapping[str, str]) -> _Secrets:
    """The secret FakeConfig fields, read from the variables and the file the options name."""
    found = _Secrets()
    if args.token_env:
        found = found._replace(
            token=_variable(environ, args.token_env, "--token-env", "the token clients must send")
        )
    if args.credentials_file and (args.ak_env or args.sk_env):
        raise OptionsError("give either --credentials-file or --ak-env and --sk-env, not both.")
    if bool(args.ak_env) != bool(args.sk_env):
        raise OptionsError("--ak-env and --sk-env go together; give both, or neither.")
    if args.credentials_file:
        ak, sk = read_credentials(args.credentials_file)
        found = found._replace(access_key=ak, secret_key=sk)
    elif args.ak_env:
        found = found._replace(
            access_key=_variable(environ, args.ak_env, "--ak-env", "the access key (AK)"),
            secret_key=_variable(environ, args.sk_env, "--sk-env", "the secret key (SK)"),
        )
    if bool(args.iam_user_env) != bool(args.iam_password_env):
        raise OptionsError(
            "--iam-user-env and --iam-password-env go together; give both, or neither."
        )
    if args.iam_domain and not args.iam_user_env:
        raise OptionsError("--iam-domain needs --iam-user-env and --iam-password-env.")
    if args.iam_user_env:
        found = found._replace(
            iam_user=_variable(environ, args.iam_user_env, "--iam-user-env", "the IAM user name"),
            iam_password=_variable(
                environ, args.iam_password_env, "--iam-password-env", "the IAM user's password"
            ),
        )
    return found


def _variable(environ: Mapping[str, str], name: str, flag: str, what: str) -> str:
    value = environ.get(name)
    if not value:
        raise OptionsError(
            f"the environment variable {name} named by {flag} is unset or empty; set it to {what}."
        )
    return value


def read_credentials(path: str | Path) -> tuple[str, str]:
    """The (AK, SK) in a credentials file (see the module's docstring for the two forms).

    Raises OptionsError naming the file and, for a bad line, its number; never a value.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise OptionsError(f"{path}: the credentials file is not UTF-8 text.") from None
    except OSError as exc:
        raise OptionsError(
            f"{path}: cannot read the credentials file: {exc.strerror or exc}."
        ) from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if "access key id" in first.lower():
        return _read_csv_credentials(path, lines)
    values: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, equals, value = stripped.partition("=")
        key = key.strip().lower()
        if not equals or key not in ("ak", "sk"):
            raise OptionsError(f"{path}: line {number} is not 'ak=…' or 'sk=…'.")
        if key in values:
            raise OptionsError(f"{path}: line {number} repeats {key}.")
        values[key] = value.strip()
    return _pair(path, values.get("ak"), values.get("sk"))


def _read_csv_credentials(path: str | Path, lines: list[str]) -> tuple[str, str]:
    rows = [row for row in csv.reader(lines) if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in rows[0]]
    if "secret access key" not in header or len(rows) != 2:
        raise OptionsError(
            f"{path}: a credentials.csv needs the columns 'Access Key Id' and 'Secret Access "
            "Key' and exactly one row under them."
        )
    row = dict(zip(header, (cell.strip() for cell in rows[1]), strict=False))
    return _pair(path, row.get("access key id"), row.get("secret access key"))


def _pair(path: str | Path, ak: str | None, sk: str | None) -> tuple[str, str]:
    if not ak or not sk:
        raise OptionsError(f"{path}: the credentials file needs a non-empty ak and sk.")
    return ak, sk


async def _serve(store: ImageStore, config: FakeConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serving_fake(store, config, host=host, port=port) as server:
        print(f"URL {server.url}", flush=True)
        await stop.wait()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not value:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def _signed_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a probability: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], not {text!r}")
    return value


def _rate(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of requests >= 1, not {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _fail(message: str, exit_code: int = 2) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return exit_code
