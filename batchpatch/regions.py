"""Region ids with an IMS endpoint (from the official SDK's region list)."""

from __future__ import annotations

from batchpatch.errors import OptionsError

IMS_REGIONS = frozenset(
    {
        "af-north-1",
        "af-south-1",
        "ae-ad-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "cn-east-2",
        "cn-east-3",
        "cn-east-4",
        "cn-east-5",
        "cn-north-1",
        "cn-north-2",
        "cn-north-4",
        "cn-north-9",
        "cn-north-11",
        "cn-north-12",
        "cn-south-1",
        "cn-south-2",
        "cn-south-4",
        "cn-southwest-2",
        "cn-southwest-3",
        "eu-west-0",
        "eu-west-101",
        "la-north-2",
        "la-south-2",
        "me-east-1",
        "my-kualalumpur-1",
        "na-mexico-1",
        "ru-moscow-1",
        "sa-brazil-1",
        "tr-west-1",
    }
)


def ims_endpoint(region: str) -> str:
    """``https://ims.REGION.myhuaweicloud.com`` for a known region id."""
    region = region.strip().lower()
    if region not in IMS_REGIONS:
        raise OptionsError(
            wording=lambda name: (
                f"unknown region {region!r} — use one of {', '.join(sorted(IMS_REGIONS))}, "
                f"or give the endpoint with {name('endpoint', 'URL')}"
            )
        )
    return f"https://ims.{region}.myhuaweicloud.com"


def region_of(endpoint: str) -> str:
    """The region in an ``https://ims.REGION.myhuaweicloud.com`` endpoint, or ""."""
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    parts = host.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "ims" and parts[1] in IMS_REGIONS else ""


def iam_endpoint(region: str) -> str:
    """IAM for ``region``, or the global IAM endpoint when no region is known."""
    return f"https://iam.{region}.myhuaweicloud.com" if region else GLOBAL_IAM


GLOBAL_IAM = "https://iam.myhuaweicloud.com"
