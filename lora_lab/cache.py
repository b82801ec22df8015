"""Content-addressed artifact cache: `<root>/<kind>/<key>/` holding files plus `manifest.json`.

- The key is a hash of everything the artifact depends on (`content_key`).
- An entry is built in a temporary sibling directory and renamed into place only once it is
  complete, manifest included; a crash or kill mid-build leaves a `.tmp-*` directory that is
  never loaded (and is swept by the next build of the same key).
- The manifest records the sha256 and size of every file. `load` verifies them all; an entry
  that fails (missing manifest, missing file, wrong checksum) is moved aside to
  `.corrupt-*` and reported as a miss, so it is rebuilt rather than loaded.
- Concurrent jobs (joblib, SLURM array) asking for the same missing key build it once: the
  builder holds an exclusive `flock` on `<root>/.locks/<kind>-<key>.lock`; the others block on it,
  then find the finished entry and load it. The kernel drops the lock when its holder dies, so a
  killed builder never blocks anyone. Across machines this needs a shared filesystem with
  working `flock` (NFSv4 does; Lustre needs the `flock` mount option).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the layout of any cached artifact changes
MANIFEST = "manifest.json"


def default_root(override: Optional[str] = None) -> Path:
    """`override`, else $LORA_LAB_CACHE, else ~/.cache/lora_lab."""
    root = override or os.environ.get("LORA_LAB_CACHE") or "~/.cache/lora_lab"
    return Path(root).expanduser()


def content_key(kind: str, payload: Dict[str, Any]) -> str:
    """A 20-hex-digit hash of `payload` (canonical JSON) and the cache format."""
    blob = json.dumps({"kind": kind, "format": FORMAT_VERSION, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Entry:
    path: Path  # the entry's directory
    meta: Dict[str, Any]  # what the builder returned, as stored in the manifest
    hit: bool  # loaded from cache (True) or built now (False)


class CorruptEntry(Exception):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_dead_builds(parent: Path, key: str) -> None:
    """Remove temporary build dirs of `key` left by killed processes on this host."""
    host = socket.gethostname()
    for stale in parent.glob(f".tmp-{key}-*"):
        parts = stale.name.rsplit("-", 3)  # .tmp-<key>, host, pid, rand
        if len(parts) == 4 and parts[1] == host and parts[2].isdigit() and not _pid_alive(int(parts[2])):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def build_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if absent), waiting for the current holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another job building %s", what)
            t0 = time.perf_counter()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s: waited %.1fs", what, time.perf_counter() - t0)
        yield
    finally:
        os.close(fd)  # releases the lock


class ArtifactCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def entry_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def _verify(self, d: Path) -> Dict[str, Any]:
        try:
            manifest = json.loads((d / MANIFEST).read_text())
            files = manifest["files"]
        except (OSError, ValueError, KeyError) as e:
            raise CorruptEntry(f"unreadable manifest: {e}") from e
        on_disk = {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != MANIFEST}
        if on_disk != set(files):
            raise CorruptEntry(f"file list differs from manifest: {sorted(on_disk ^ set(files))}")
        for rel, info in files.items():
            p = d / rel
            if p.stat().st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
                raise CorruptEntry(f"checksum mismatch: {rel}")
        return manifest

    def load(self, kind: str, key: str) -> Optional[Entry]:
        """The verified entry, or None (absent, or corrupt and moved aside)."""
        d = self.entry_dir(kind, key)
        if not d.exists():
            return None
        try:
            manifest = self._verify(d)
        except CorruptEntry as e:
            aside = d.with_name(f".corrupt-{key}-{uuid.uuid4().hex[:8]}")
            log.warning("cache entry %s is corrupt (%s); moved to %s and rebuilding", d, e, aside.name)
            os.replace(d, aside)
            return None
        return Entry(d, manifest.get("meta", {}), hit=True)

    def get_or_build(
        self,
        kind: str,
        key: str,
        build: Callable[[Path], Dict[str, Any]],
        describe: Optional[Dict[str, Any]] = None,
    ) -> Entry:
        """Load `kind/key`, or call `build(tmp_dir)` to write its files and return metadata.

        `describe` (e.g. the key's payload) is stored in the manifest for humans.
        """
        entry = self.load(kind, key)
        if entry is not None:
            return entry
        with build_lock(self.root / ".locks" / f"{kind}-{key}.lock", f"{kind}/{key}"):
            entry = self.load(kind, key)  # built by the job we waited for
            if entry is not None:
                return entry
            return self._build(kind, key, build, describe)

    def _build(self, kind: str, key: str, build: Callable[[Path], Dict[str, Any]],
               describe: Optional[Dict[str, Any]]) -> Entry:
        final = self.entry_dir(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        _sweep_dead_builds(final.parent, key)
        tmp = final.with_name(f".tmp-{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            meta = build(tmp)
            files = {}
            for p in sorted(tmp.rglob("*")):
                if p.is_file():
                    with open(p, "rb") as f:
                        os.fsync(f.fileno())
                    files[str(p.relative_to(tmp))] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            manifest = {
                "kind": kind,
                "key": key,
                "format": FORMAT_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": files,
                "meta": meta,
                "describe": describe or {},
            }
            write_json_atomic(tmp / MANIFEST, manifest)
            try:
                os.rename(tmp, final)
            except OSError:
                # Someone else finished the same key first (a filesystem without working flock):
                # theirs is as good as ours.
                shutil.rmtree(tmp, ignore_errors=True)
                entry = self.load(kind, key)
                if entry is None:
                    raise
                return Entry(entry.path, entry.meta, hit=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Entry(final, meta, hit=False)
