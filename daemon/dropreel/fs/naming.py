"""What files are called: output stems, media names, clash suffixes. Pure functions."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

DEFAULT_EXTENSION = "mp4"
# File names are limited to 255 bytes. A stem grows by a clash number and an index and
# extension (`_12-4.webm`, `.result.json`); a kept or refused name by a job id or by
# `.<name>.error.pending`. These budgets leave room for all of that, in UTF-8 bytes.
MAX_STEM_BYTES = 150
MAX_KEPT_NAME_BYTES = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
# Extensions a result may be stored under, as spelt in a URL -> as we write them.
MEDIA_EXTENSIONS = {
    "mp4": "mp4",
    "m4v": "m4v",
    "mov": "mov",
    "webm": "webm",
    "mkv": "mkv",
    "gif": "gif",
    "png": "png",
    "jpg": "jpg",
    "jpeg": "jpg",
    "webp": "webp",
    "avif": "avif",
}
_PREFERRED_EXTENSIONS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "video/x-matroska": "mkv",
    "video/x-m4v": "m4v",
}


def displayable(name: str) -> str:
    """A name as valid UTF-8 text: bytes that are not UTF-8 (a Latin-1 name reaches Python
    as surrogate escapes) shown as `\\xe9`. For the database, logs and file names of ours."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def fit_name(name: str, limit: int) -> str:
    """A file name cut to `limit` UTF-8 bytes, keeping its extension."""
    head, dot, tail = name.rpartition(".")
    if not dot or not head or len(tail.encode("utf-8")) > 16:
        return fit_bytes(name, limit)
    return fit_bytes(head, limit - len(tail.encode("utf-8")) - 1) + "." + tail


def safe_stem(file_name: str) -> str:
    """The output stem for a job file: its name without suffix, made safe for any folder."""
    base = displayable(file_name).rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = unicodedata.normalize("NFC", stem)
    stem = _UNSAFE.sub("_", stem).strip(" .")
    stem = fit_bytes(stem, MAX_STEM_BYTES).rstrip(" .")
    return stem or "job"


def media_name(stem: str, index: int, count: int, extension: str) -> str:
    """`stem.ext` for a one-generation job, `stem-<index>.ext` (1-based) otherwise."""
    return f"{stem}.{extension}" if count == 1 else f"{stem}-{index}.{extension}"


def preset_stem(preset: str | None, stem: str) -> str:
    """A job's output stem: under its preset's folder of the outbox, if it has one."""
    return f"{preset}/{stem}" if preset else stem


def preset_of(stem: str) -> str | None:
    """The preset a job's stem puts it under (a stem of its own never holds a '/')."""
    head, slash, _ = stem.partition("/")
    return head if slash else None


def manifest_name(stem: str) -> str:
    return f"{stem}.result.json"


def error_sidecar_name(file_name: str) -> str:
    return f"{file_name}.error.json"


def numbered(name: str, n: int) -> str:
    """The n-th alternative to a clashing name: `cat.mp4` -> `cat_2.mp4`."""
    if n <= 1:
        return name
    if name.endswith(".result.json"):
        return f"{name.removesuffix('.result.json')}_{n}.result.json"
    if name.endswith(".error.json"):
        return f"{numbered(name.removesuffix('.error.json'), n)}.error.json"
    head, dot, tail = name.rpartition(".")
    if not dot or not head:
        return f"{name}_{n}"
    return f"{head}_{n}.{tail}"


def numbered_stem(stem: str, n: int) -> str:
    """The n-th alternative to a clashing stem: `my.clip` -> `my.clip_2`."""
    return stem if n <= 1 else f"{stem}_{n}"


def first_free(
    name: str,
    is_taken: Callable[[str], bool],
    number: Callable[[str, int], str] = numbered,
) -> str:
    """The first of `name`, `name_2`, `name_3`, ... that is not taken."""
    n = 1
    while is_taken(candidate := number(name, n)):
        n += 1
    return candidate


def extension_for(url: str, content_type: str | None) -> str:
    """A result's extension: from the URL path, else the Content-Type, else mp4; only ever
    a media extension (a URL ending `.sh` must not name a file `.sh`)."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lstrip(".").lower()
    if suffix in MEDIA_EXTENSIONS:
        return MEDIA_EXTENSIONS[suffix]
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in _PREFERRED_EXTENSIONS:
            return _PREFERRED_EXTENSIONS[media_type]
    return DEFAULT_EXTENSION


def printable(name: str, limit: int = MAX_KEPT_NAME_BYTES) -> str:
    """A file name safe to put into a file name of ours: valid UTF-8, no control characters
    or separators, not hidden, and short enough to take a prefix or a suffix of ours."""
    shown = displayable(name)
    cleaned = "".join("_" if (ord(c) < 32 or ord(c) == 127 or c in "/\\") else c for c in shown)
    return fit_name(cleaned.lstrip("."), limit) or "unnamed"
