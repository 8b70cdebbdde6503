"""The folders: which files are ready, fingerprints, moves that never
overwrite and never lose a file, and housekeeping.

No AtHoc and no database here. A move across volumes (a UNC share to a
local disk) copies to a temporary name, renames, then deletes the source,
so a crash leaves at worst a ``.bobosync-tmp`` file and never a half file
under the final name. See ../shared/bobo-format.md, "The CSV file" and
"Moving never overwrites".
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bobosync.errors import FolderError

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".bobosync-tmp"
KEEP_FILE_NAME = ".gitkeep"
# Windows' code for "cannot move the file to a different disk drive".
_ERROR_NOT_SAME_DEVICE = 17
_HASH_CHUNK_BYTES = 1024 * 1024
_SECONDS_PER_DAY = 86400
_WRITE_FIX = "check that the folder exists and that bobosync's account may write there"
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
# Most file systems allow 255 bytes a name (NTFS 255 UTF-16 units, never
# more than the UTF-8 bytes); a suffixed name is cut to fit.
_MAX_NAME_BYTES = 255
# The tail _free_target adds to a taken name: _YYYYmmdd_HHMMSS, then _2...
_TAKEN_NAME_TAIL = re.compile(r"_[0-9]{8}_[0-9]{6}(?:_[0-9]+)?$")
_MAPPED_DRIVE_HINT = (
    "; a mapped drive letter exists only for the user who mapped it; "
    "use a UNC path (\\\\server\\share\\...)"
)


class SourceNotRemovedError(FolderError):
    """The copy in the destination is complete, but the source could not be
    deleted (a share that allows create but not delete). ``destination``
    is the copy; pass it as ``known_copy`` when trying the move again."""

    def __init__(self, message: str, *, path: Path, destination: Path) -> None:
        self.destination = destination
        super().__init__(message, path=path)


@dataclass
class InboxListing:
    """One look at CSV_DIRECTORY."""

    ready: list[Path] = field(default_factory=list)
    waiting: list[Path] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileFingerprint:
    """What identifies a file's content when it is not moved away."""

    name: str
    size: int
    mtime_ns: int
    sha256: str


def is_candidate_name(name: str) -> bool:
    """Tell whether a name is a BOBO file to read: ``.csv`` in any case,
    not an Excel owner file (``~$``), not hidden, and not unmovable."""
    if name.startswith(("~$", ".")) or is_unmovable_name(name):
        return False
    return name.lower().endswith(".csv")


def is_unmovable_name(name: str) -> bool:
    r"""Tell whether a name cannot be moved unchanged on every OS.

    Linux allows ``\``, ``C:`` and control characters in a name; bobosync's
    moves refuse them (they would leave the folder on Windows), so reading
    such a file would send its events without ever finishing it. A name
    that is not valid UTF-8 (Python shows its bytes as lone surrogates)
    cannot be stored in the database.
    """
    has_control = any(ord(char) < 32 or ord(char) == 127 for char in name)
    has_surrogate = any("\ud800" <= char <= "\udfff" for char in name)
    has_bad_mark = "\\" in name or bool(_DRIVE_LETTER.match(name))
    return has_control or has_surrogate or has_bad_mark


def list_inbox(
    directory: Path,
    *,
    settle_seconds: float,
    now_timestamp: float,
    setting_name: str = "CSV_DIRECTORY",
) -> InboxListing:
    """Sort the folder's entries into ready, waiting and ignored.

    A file is ready when its modification time is at least
    ``settle_seconds`` before ``now_timestamp`` (seconds since the epoch)
    and it can be opened for reading. Ready files come oldest first. Raises
    FolderError when the folder cannot be read; never creates it.
    """
    listing = InboxListing()
    dated: list[tuple[int, str, Path]] = []
    for entry in _scan(directory, setting_name):
        is_regular = entry.is_file() and not _is_link(entry)
        if not is_candidate_name(entry.name) or not is_regular:
            listing.ignored.append(entry.name)
            continue
        path = Path(entry.path)
        mtime_ns = _settled_mtime_ns(path, settle_seconds, now_timestamp)
        if mtime_ns is None or not _can_open(path):
            listing.waiting.append(path)
            continue
        dated.append((mtime_ns, entry.name, path))
    listing.ready = [path for _, _, path in sorted(dated)]
    listing.waiting.sort()
    listing.ignored.sort()
    return listing


def list_ready_files(
    directory: Path, *, settle_seconds: float, now_timestamp: float
) -> list[Path]:
    """The ready files of list_inbox, oldest first."""
    listing = list_inbox(
        directory, settle_seconds=settle_seconds, now_timestamp=now_timestamp
    )
    return listing.ready


def folder_error_message(setting_name: str, directory: Path, reason: str) -> str:
    """Say which folder is not accessible and what to check."""
    message = f"{setting_name} {directory} is not accessible ({reason})"
    if _DRIVE_LETTER.match(str(directory)):
        message += _MAPPED_DRIVE_HINT
    return message


def fingerprint_file(path: Path) -> FileFingerprint:
    """Return name, size, modification time and SHA-256 of a file,
    reading it in chunks."""
    status = path.stat()
    return FileFingerprint(
        name=path.name,
        size=status.st_size,
        mtime_ns=status.st_mtime_ns,
        sha256=_sha256_of(path),
    )


def same_content(first: Path, second: Path) -> bool:
    """Tell whether two files hold the same bytes (size, then SHA-256)."""
    if first.stat().st_size != second.stat().st_size:
        return False
    return _sha256_of(first) == _sha256_of(second)


def find_copy(source: Path, directory: Path) -> Path | None:
    """Return a file in ``directory`` that holds ``source``'s bytes under its
    name or a name move_file gives it (``<stem>_<suffix>...``), else None.

    A copy across volumes that a crash stopped before the source was deleted
    leaves such a file; finishing the move must not copy it a second time.
    """
    for path in _regular_files(directory):
        if _is_named_like(path.name, source) and _is_copy_of(source, path):
            return path
    return None


def _is_named_like(name: str, source: Path) -> bool:
    stem, suffix = source.stem, source.suffix
    if name == source.name:
        return True
    if not name.endswith(suffix):
        return False
    if name.startswith(f"{stem}_"):
        return True
    # A suffixed name that was too long has a shortened stem.
    head = name[: len(name) - len(suffix)]
    tail = _TAKEN_NAME_TAIL.search(head)
    return tail is not None and head[: tail.start()] == _fit_stem(
        stem, tail.group() + suffix
    )


def move_file(
    source: Path,
    destination_dir: Path,
    *,
    now: datetime,
    known_copy: Path | None = None,
) -> Path:
    """Move a file into a folder without overwriting; return its new path.

    A taken name gets a ``_YYYYmmdd_HHMMSS`` suffix (``now``), then ``_2``,
    ``_3``... Across volumes the file is copied, renamed into place, and
    only then the source is deleted. When ``known_copy`` (from an earlier
    SourceNotRemovedError) holds the same bytes, only the delete is retried.

    Raises FolderError (source untouched) when the destination is missing
    or refuses the file, and SourceNotRemovedError when only the delete
    of the source failed.
    """
    _require_folder(destination_dir, f"cannot move {source.name}")
    if known_copy is not None and _is_copy_of(source, known_copy):
        _remove_source(source, known_copy)
        return known_copy
    target = _free_target(destination_dir, source.name, now)
    try:
        os.rename(source, target)
        return target
    except OSError as err:
        if not _is_cross_volume(err):
            raise FolderError(
                _move_failed(source, destination_dir, err), path=source
            ) from err
    return _copy_then_remove(source, destination_dir, now)


def write_new_file(
    directory: Path, name: str, text: str, *, now: datetime, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to a new file named ``name`` (suffixed like move_file
    when taken) and return its path; never overwrites. Raises FolderError."""
    _require_folder(directory, f"cannot write {name}")
    while True:
        target = _free_target(directory, name, now)
        try:
            with target.open("x", encoding=encoding, newline="") as stream:
                stream.write(text)
            return target
        except FileExistsError:
            continue
        except OSError as err:
            message = f"cannot write {target}: {err.strerror or err}; " + _WRITE_FIX
            raise FolderError(message, path=directory) from err


def remove_temporary_files(directory: Path) -> list[Path]:
    """Delete ``*.bobosync-tmp`` files left by a copy a crash interrupted;
    return the ones removed."""
    removed = []
    for path in _regular_files(directory):
        if path.name.endswith(TEMPORARY_SUFFIX) and _remove_quietly(path):
            logger.info("leftover temporary file removed: path=%s", path)
            removed.append(path)
    return removed


def purge_old_files(directory: Path, older_than_days: int, now_timestamp: float) -> int:
    """Delete regular files modified more than ``older_than_days`` days
    before ``now_timestamp``; return how many. 0 or less keeps all."""
    if older_than_days <= 0:
        return 0
    cutoff = now_timestamp - older_than_days * _SECONDS_PER_DAY
    count = 0
    for path in _regular_files(directory):
        mtime = _mtime_or_none(path)
        if path.name == KEEP_FILE_NAME or mtime is None or mtime >= cutoff:
            continue
        if _remove_quietly(path):
            count += 1
    return count


def _is_link(entry: os.DirEntry[str]) -> bool:
    """A symbolic link or a Windows junction: it may point outside the
    folder, and the spec reads only regular files directly in it."""
    is_junction = getattr(entry, "is_junction", None)  # Python 3.12+
    return entry.is_symlink() or bool(is_junction and is_junction())


def _scan(directory: Path, setting_name: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise FolderError(
            folder_error_message(setting_name, directory, reason), path=directory
        ) from err


def _settled_mtime_ns(
    path: Path, settle_seconds: float, now_timestamp: float
) -> int | None:
    """Return the modification time when the file has settled, else None."""
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        return None
    # Zero means "do not wait", even for a time stamp ahead of our clock.
    if settle_seconds <= 0 or now_timestamp - mtime_ns / 1e9 >= settle_seconds:
        return mtime_ns
    return None


def _can_open(path: Path) -> bool:
    # On Windows a writer's handle without read sharing makes this fail.
    try:
        with path.open("rb"):
            return True
    except OSError:
        return False


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _require_folder(directory: Path, action: str) -> None:
    if not directory.is_dir():
        raise FolderError(
            f"{action}: folder {directory} does not exist or is not a folder; "
            "create it or correct the setting that names it",
            path=directory,
        )


def _free_target(directory: Path, name: str, now: datetime) -> Path:
    """Return the first free name: ``name``, then with a time stamp, then
    with a counter. The result always lies directly inside ``directory``."""
    _require_plain_name(directory, name)
    stem, suffix = Path(name).stem, Path(name).suffix
    target = directory / (_fit_stem(stem, suffix) + suffix)
    if not os.path.lexists(target):
        return target
    tail = "_" + now.strftime("%Y%m%d_%H%M%S")
    target = directory / (_fit_stem(stem, tail + suffix) + tail + suffix)
    counter = 2
    while os.path.lexists(target):
        numbered = f"{tail}_{counter}{suffix}"
        target = directory / (_fit_stem(stem, numbered) + numbered)
        counter += 1
    return target


def _fit_stem(stem: str, tail: str) -> str:
    """Cut ``stem`` so that ``stem + tail`` fits _MAX_NAME_BYTES in UTF-8.

    The first dot-part is cut, so ``X.csv.rejected`` keeps ``.csv.rejected``;
    a first part too short for that has the stem cut from its end.
    """
    budget = _MAX_NAME_BYTES - _utf8_length(tail)
    if _utf8_length(stem) <= budget:
        return stem
    base, dot, rest = stem.partition(".")
    base_budget = budget - _utf8_length(dot + rest)
    if base_budget >= _utf8_length(base[:1]) > 0:
        return _cut_to_bytes(base, base_budget) + dot + rest
    return _cut_to_bytes(stem, budget)


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _cut_to_bytes(text: str, limit: int) -> str:
    """The longest start of ``text`` of at most ``limit`` UTF-8 bytes."""
    encoded = text.encode("utf-8", "surrogatepass")[: max(limit, 0)]
    return encoded.decode("utf-8", "ignore")


def _require_plain_name(directory: Path, name: str) -> None:
    """Refuse a name that would put the file outside ``directory``."""
    is_plain = (
        name not in ("", ".", "..")
        and not any(mark in name for mark in ("/", "\\", "\x00"))
        and not _DRIVE_LETTER.match(name)
    )
    if is_plain and (directory / name).resolve().parent == directory.resolve():
        return
    raise FolderError(
        f"refusing the file name {name!r}: it would leave the folder {directory}",
        path=directory,
    )


def _is_cross_volume(err: OSError) -> bool:
    return (
        err.errno == errno.EXDEV
        or getattr(err, "winerror", None) == _ERROR_NOT_SAME_DEVICE
    )


def _copy_then_remove(source: Path, destination_dir: Path, now: datetime) -> Path:
    target = _free_target(destination_dir, source.name, now)
    temporary_stem = _fit_stem(target.name, TEMPORARY_SUFFIX)
    temporary = target.with_name(temporary_stem + TEMPORARY_SUFFIX)
    try:
        _copy_durably(source, temporary)
        # The copy took time: another file may have taken the name meanwhile.
        target = _free_target(destination_dir, source.name, now)
        os.rename(temporary, target)
    except OSError as err:
        _remove_quietly(temporary)
        raise FolderError(
            _move_failed(source, destination_dir, err), path=source
        ) from err
    _remove_source(source, target)
    return target


def _copy_durably(source: Path, temporary: Path) -> None:
    with source.open("rb") as reader, temporary.open("wb") as writer:
        shutil.copyfileobj(reader, writer, _HASH_CHUNK_BYTES)
        writer.flush()
        os.fsync(writer.fileno())
    try:
        shutil.copystat(source, temporary)
    except OSError:
        # Some shares refuse time stamps; the bytes are what matters.
        logger.debug("time stamps not copied: path=%s", temporary)


def _remove_source(source: Path, copy: Path) -> None:
    try:
        os.remove(source)
    except OSError as err:
        raise SourceNotRemovedError(
            f"copied {source} to {copy}, but could not remove the source: "
            f"{err.strerror or err}; bobosync's account needs delete rights "
            f"on {source.parent}",
            path=source,
            destination=copy,
        ) from err


def _is_copy_of(source: Path, known_copy: Path) -> bool:
    try:
        return same_content(source, known_copy)
    except OSError:
        return False


def _move_failed(source: Path, destination_dir: Path, err: OSError) -> str:
    reason = f"cannot move {source} to {destination_dir}: {err.strerror or err}"
    if err.errno == errno.ENOSPC:
        return f"{reason}; free space on {destination_dir} (the disk is full)"
    return f"{reason}; {_WRITE_FIX}, and that no program holds the file open"


def _regular_files(directory: Path) -> list[Path]:
    try:
        return [path for path in directory.iterdir() if path.is_file()]
    except OSError:
        return []


def _mtime_or_none(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _remove_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as err:
        logger.warning("could not remove file: path=%s error=%s", path, err)
        return False
