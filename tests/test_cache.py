import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lora_lab.cache import MANIFEST, ArtifactCache, content_key


def _writer(payload: bytes):
    calls = []

    def build(d):
        calls.append(d)
        (d / "weights.bin").write_bytes(payload)
        (d / "sub").mkdir()
        (d / "sub" / "cfg.json").write_text("{}")
        return {"n": len(calls)}

    return build, calls


def test_key_depends_on_every_field():
    base = {"a": 1, "b": {"c": [1, 2]}}
    assert content_key("base", base) == content_key("base", {"b": {"c": [1, 2]}, "a": 1})
    assert content_key("base", base) != content_key("base", {"a": 1, "b": {"c": [1, 3]}})
    assert content_key("base", base) != content_key("adapter", base)


def test_miss_then_hit(tmp_path):
    cache = ArtifactCache(tmp_path)
    build, calls = _writer(b"x" * 100)
    e1 = cache.get_or_build("base", "k1", build)
    e2 = cache.get_or_build("base", "k1", build)
    assert (e1.hit, e2.hit) == (False, True) and len(calls) == 1
    assert e2.meta == {"n": 1} and (e2.path / "sub" / "cfg.json").exists()
    manifest = json.loads((e2.path / MANIFEST).read_text())
    assert set(manifest["files"]) == {"weights.bin", "sub/cfg.json"}


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_file", "extra_file", "bad_manifest"])
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, damage):
    cache = ArtifactCache(tmp_path)
    build, calls = _writer(b"abcdefgh" * 64)
    e = cache.get_or_build("base", "k", build)
    w = e.path / "weights.bin"
    if damage == "flip_byte":
        b = bytearray(w.read_bytes()); b[10] ^= 1; w.write_bytes(bytes(b))  # same size, other content
    elif damage == "truncate":
        w.write_bytes(w.read_bytes()[:-1])
    elif damage == "delete_file":
        w.unlink()
    elif damage == "extra_file":
        (e.path / "stray.bin").write_bytes(b"?")
    else:
        (e.path / MANIFEST).write_text("{not json")
    assert cache.load("base", "k") is None  # never loaded
    assert list(tmp_path.glob("base/.corrupt-k-*"))  # moved aside for inspection
    e2 = cache.get_or_build("base", "k", build)
    assert not e2.hit and len(calls) == 2
    assert cache.load("base", "k").hit


def test_failed_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path)

    def boom(d):
        (d / "half.bin").write_bytes(b"1")
        raise RuntimeError("died")

    with pytest.raises(RuntimeError):
        cache.get_or_build("base", "k", boom)
    assert cache.load("base", "k") is None
    assert list((tmp_path / "base").iterdir()) == []


def test_killed_build_is_never_loaded_and_is_swept(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from lora_lab.cache import ArtifactCache
        def build(d):
            (d / "w.bin").write_bytes(b"partial")
            Path({str(tmp_path / 'started')!r}).touch()
            time.sleep(60)
            return {{}}
        ArtifactCache(Path({str(tmp_path / 'c')!r})).get_or_build("base", "k", build)
    """)
    p = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(300):
        if (tmp_path / "started").exists():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    cache = ArtifactCache(tmp_path / "c")
    leftovers = list((tmp_path / "c" / "base").glob(".tmp-k-*"))
    assert leftovers and cache.load("base", "k") is None
    build, calls = _writer(b"z")
    assert not cache.get_or_build("base", "k", build).hit
    assert not any(p.exists() for p in leftovers)  # the dead build's temp dir is gone


def test_concurrent_builders_of_one_key_build_it_once(tmp_path):
    """Several processes ask for the same missing key at once: one builds, the others wait and load."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from lora_lab.cache import ArtifactCache
        def build(d):
            with open({str(tmp_path / 'builds.log')!r}, "a") as f:
                f.write(sys.argv[1] + "\\n")
            time.sleep(1.0)  # long enough that every other process arrives mid-build
            (d / "w.bin").write_bytes(b"built by " + sys.argv[1].encode())
            return {{"by": sys.argv[1]}}
        e = ArtifactCache(Path({str(tmp_path / 'c')!r})).get_or_build("base", "k", build)
        print(e.hit, (e.path / "w.bin").read_text())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=60)[0].split(maxsplit=1) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    builders = (tmp_path / "builds.log").read_text().split()
    assert len(builders) == 1
    assert sorted(hit for hit, _ in outs) == ["False", "True", "True"]
    assert {text.strip() for _, text in outs} == {f"built by {builders[0]}"}
    assert [p.name for p in (tmp_path / "c" / "base").iterdir()] == ["k"]
