"""Images a job sends as its input: which names are assets, what a job may name, and whether
bytes are really an image of an allowed type. Pure."""

from __future__ import annotations

from dataclasses import dataclass

MAX_IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def is_asset_name(name: str) -> bool:
    """Whether a file in the inbox is an image that waits for a job to name it."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def image_name_problem(value: object) -> str | None:
    """Why a job's `dropreel.image` cannot name an image beside it in the inbox, or None."""
    if not isinstance(value, str) or not value:
        return "must be the name of an image file in the inbox"
    if "/" in value or "\\" in value or "\x00" in value or value.startswith("."):
        return f"{value!r} must be a plain file name in the inbox, not a path or hidden name"
    if not value.lower().endswith(IMAGE_SUFFIXES):
        return f"{value!r} must be a .png, .jpg, .jpeg or .webp file"
    return None


def image_media_type(data: bytes) -> str | None:
    """The image's type from its first bytes (PNG, JPEG, WebP), whatever its name says."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_problem(name: str, data: bytes) -> str | None:
    """Why these bytes cannot be sent as an image, or None."""
    if len(data) > MAX_IMAGE_BYTES:
        return f"image {name} is over {MAX_IMAGE_BYTES // (1024 * 1024)} MiB"
    if image_media_type(data) is None:
        return f"{name} is not a PNG, JPEG or WebP image"
    return None


@dataclass
class AssetWaits:
    """Job files waiting for the image they name: since when, and until when."""

    wait_s: float

    def __post_init__(self) -> None:
        self._since: dict[str, float] = {}

    def expired(self, job_file: str, now: float) -> bool:
        """Note that `job_file` waits; whether it has waited longer than allowed."""
        since = self._since.setdefault(job_file, now)
        return now - since >= self.wait_s

    def forget(self, job_file: str) -> None:
        self._since.pop(job_file, None)

    def next_due(self) -> float | None:
        """When the first wait runs out (on the clock `expired` was given), if any waits."""
        return min(self._since.values()) + self.wait_s if self._since else None
