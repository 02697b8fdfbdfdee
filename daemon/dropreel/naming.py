"""What files are called: output stems, media names, clash suffixes. Pure functions."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

DEFAULT_EXTENSION = "mp4"
MAX_STEM_CHARS = 120
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,8}$")
_PREFERRED_EXTENSIONS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
}


def safe_stem(file_name: str) -> str:
    """The output stem for a job file: its name without suffix, made safe for any folder."""
    base = file_name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = unicodedata.normalize("NFC", stem)
    stem = _UNSAFE.sub("_", stem).strip(" .")
    stem = stem[:MAX_STEM_CHARS].rstrip(" .")
    return stem or "job"


def media_name(stem: str, index: int, count: int, extension: str) -> str:
    """`stem.ext` for a one-generation job, `stem-<index>.ext` (1-based) otherwise."""
    return f"{stem}.{extension}" if count == 1 else f"{stem}-{index}.{extension}"


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
    """A result's extension: from the URL path, else the Content-Type, else mp4."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lstrip(".")
    if _EXTENSION.match(suffix):
        return suffix.lower()
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in _PREFERRED_EXTENSIONS:
            return _PREFERRED_EXTENSIONS[media_type]
        guessed = mimetypes.guess_extension(media_type)
        if guessed and _EXTENSION.match(guessed.lstrip(".")):
            return guessed.lstrip(".")
    return DEFAULT_EXTENSION


def printable(name: str) -> str:
    """A file name safe to put into a file name of ours: control characters replaced."""
    cleaned = "".join("_" if (ord(c) < 32 or ord(c) == 127 or c in "/\\") else c for c in name)
    return cleaned.lstrip(".") or "unnamed"
