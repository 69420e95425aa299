#!/usr/bin/env python3
"""Holds the stand-in Hub (tests/hub/standin.mjs) to huggingface_hub's own client.

The page's Hub tests (tests/e2e/hub.test.mjs) trust the stand-in to answer
as huggingface.co does. This script checks that trust with the client that
defines "as huggingface.co does": if hf_hub_download, snapshot_download and
get_hf_file_metadata accept the stand-in's answers, build the usual cache
and raise the usual errors, its status codes and headers are the Hub's.

Run by hand, from the repository root (CI has no Python dependencies):

    pip install huggingface_hub
    python3 tests/hub/check_standin.py

It needs Node 20 on PATH, and the vitrine binary (VITRINE_BIN, else
build.sh's target folder) for the checks of `vitrine fetch`. It builds a temporary ROOT of three repos, starts
the stand-in on a free port, prints one line per check ("ok" or "FAIL")
and exits 1 if any check failed. Nothing is sent beyond 127.0.0.1.
"""

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin.mjs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_repo(root, repo_id, files, *, lfs=(), gated=False):
    """A repo as standin.mjs reads it: the files and repo.json. Returns its commit."""
    folder = root / repo_id
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    commit = hashlib.sha1(f"{repo_id}\0commit".encode()).hexdigest()
    meta = {
        "commit": commit,
        "refs": {"main": commit, "v1.0": commit, "refs/pr/1": commit},
        "tags": ["v1.0"],
        "gated": gated,
        "lfs": list(lfs),
    }
    (folder / "repo.json").write_text(json.dumps(meta, indent=2))
    return commit


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def main():
    tmp = Path(tempfile.mkdtemp(prefix="standin-check-"))
    root, cache = tmp / "root", tmp / "cache"
    root.mkdir()

    config = json.dumps({"architecture": "vit_tiny_patch16_224", "num_classes": 10}).encode()
    weights = secrets.token_bytes(300_000)
    bin_weights = secrets.token_bytes(120_000)
    commit = write_repo(root, "acme/vit-tiny", {"config.json": config, "model.safetensors": weights}, lfs=["model.safetensors"])
    write_repo(root, "acme/vit-bin", {"pytorch_model.bin": bin_weights}, lfs=["pytorch_model.bin"])
    write_repo(root, "acme/gated", {"config.json": config, "model.safetensors": weights}, lfs=["model.safetensors"], gated=True)

    port, cdn_port = free_port(), free_port()
    log_path = tmp / "requests.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        ["node", str(STANDIN), str(root), str(port), str(cdn_port)],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "STANDIN_LOG": "1"},
    )
    endpoint = server.stdout.readline().strip()
    if not endpoint.startswith("http://"):
        print(f"FAIL the stand-in did not start (see {log_path})")
        return 1
    cdn = f"http://127.0.0.1:{cdn_port}"

    # huggingface_hub reads these once, on import: set them first. No token
    # from this machine may reach the stand-in, and no Xet (the stand-in
    # serves plain HTTP, as the Hub does for clients without Xet).
    os.environ.update({
        "HF_ENDPOINT": endpoint,
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp / "home"),
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
    })
    os.environ.pop("HF_TOKEN", None)
    import huggingface_hub
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    print(f"huggingface_hub {huggingface_hub.__version__}, stand-in at {endpoint}, CDN at {cdn}")
    failures = 0

    def check(name, fn):
        nonlocal failures
        try:
            detail = fn()
            print(f"ok   {name}" + (f" ({detail})" if detail else ""))
        except Exception as e:  # one line each; the traceback only for surprises
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}".splitlines()[0])
            if not isinstance(e, AssertionError):
                traceback.print_exc(limit=3)

    def same_bytes(repo, filename, revision, want):
        path = hf_hub_download(repo, filename, revision=revision)
        got = Path(path).read_bytes()
        assert got == want, f"{len(got)} bytes, want {len(want)}, equal prefix: {got[:16] == want[:16]}"

    def raises(error, exclude=None, **kwargs):
        def run():
            try:
                hf_hub_download(**kwargs)
            except error as e:
                if exclude and isinstance(e, exclude):
                    raise AssertionError(f"raised {type(e).__name__}, a {exclude.__name__}") from e
                return type(e).__name__
            raise AssertionError(f"no {error.__name__} raised")
        return run

    for revision in ["main", "v1.0", commit, "refs/pr/1"]:
        check(f"config.json by {revision}", lambda r=revision: same_bytes("acme/vit-tiny", "config.json", r, config))
        check(f"model.safetensors (LFS) by {revision}", lambda r=revision: same_bytes("acme/vit-tiny", "model.safetensors", r, weights))
    check("pytorch_model.bin alone, by main", lambda: same_bytes("acme/vit-bin", "pytorch_model.bin", "main", bin_weights))

    def snapshot():
        folder = Path(snapshot_download("acme/vit-tiny"))
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["config.json", "model.safetensors"], names
        assert (folder / "model.safetensors").read_bytes() == weights
        assert folder.name == commit, folder
        return f"{', '.join(names)} in snapshots/{commit[:8]}…"
    check("snapshot_download", snapshot)

    def layout():
        repo = cache / "models--acme--vit-tiny"
        # Recent huggingface_hub also keeps snapshot_download's tree listings, in trees/.
        folders = sorted(p.name for p in repo.iterdir() if not p.name.startswith(".") and p.name != "trees")
        assert folders == ["blobs", "refs", "snapshots"], folders
        for ref in ["main", "v1.0", "refs/pr/1"]:
            got = (repo / "refs" / ref).read_text()
            assert got == commit, f"refs/{ref} holds {got!r}"
        blobs = sorted(p.name for p in (repo / "blobs").iterdir())
        want = sorted([git_blob_sha1(config), hashlib.sha256(weights).hexdigest()])
        assert blobs == want, f"blobs {blobs}, want {want}"
        link = repo / "snapshots" / commit / "model.safetensors"
        assert link.resolve() == (repo / "blobs" / hashlib.sha256(weights).hexdigest()).resolve()
        assert [p.name for p in (repo / "snapshots").iterdir()] == [commit]
        return "refs/main, refs/v1.0, refs/refs/pr/1 hold the commit; blobs by git sha1 and sha256"
    check("cache layout models--acme--vit-tiny/{blobs,refs,snapshots}", layout)

    def metadata_lfs():
        meta = get_hf_file_metadata(hf_hub_url("acme/vit-tiny", "model.safetensors"))
        assert meta.commit_hash == commit, meta.commit_hash
        assert meta.etag == hashlib.sha256(weights).hexdigest(), meta.etag
        assert meta.size == len(weights), meta.size
        assert meta.location.startswith(f"{cdn}/repos/"), meta.location
        return f"etag {meta.etag[:8]}…, size {meta.size}, location on the CDN"
    check("get_hf_file_metadata of an LFS file (302, not followed)", metadata_lfs)

    def metadata_small():
        meta = get_hf_file_metadata(hf_hub_url("acme/vit-tiny", "config.json"))
        assert meta.commit_hash == commit, meta.commit_hash
        assert meta.etag == git_blob_sha1(config), meta.etag
        assert meta.size == len(config), meta.size
        assert f"{endpoint}/api/resolve-cache/models/acme/vit-tiny/{commit}/config.json?" in meta.location, meta.location
        return f"etag {meta.etag[:8]}…, size {meta.size}, through /api/resolve-cache/"
    check("get_hf_file_metadata of a small file by branch (relative 307, followed)", metadata_small)

    def metadata_pr():
        meta = get_hf_file_metadata(hf_hub_url("acme/vit-tiny", "config.json", revision="refs/pr/1"))
        assert meta.commit_hash == commit and meta.size == len(config), meta
        assert "refs%2Fpr%2F1" in meta.location, meta.location
        return "asked as refs%2Fpr%2F1"
    check("get_hf_file_metadata by refs/pr/1", metadata_pr)

    check("gated repo raises GatedRepoError",
          raises(GatedRepoError, repo_id="acme/gated", filename="config.json"))
    check("missing repo raises RepositoryNotFoundError",
          raises(RepositoryNotFoundError, exclude=GatedRepoError, repo_id="acme/nothing", filename="config.json"))
    check("missing revision raises RevisionNotFoundError",
          raises(RevisionNotFoundError, repo_id="acme/vit-tiny", filename="config.json", revision="v9.9"))
    check("missing file raises EntryNotFoundError",
          raises(EntryNotFoundError, repo_id="acme/vit-tiny", filename="preprocessor_config.json"))

    def no_exist():
        marker = cache / "models--acme--vit-tiny" / ".no_exist" / commit / "preprocessor_config.json"
        assert marker.exists(), f"{marker} missing: EntryNotFound came without X-Repo-Commit?"
        return ".no_exist/<commit>/preprocessor_config.json"
    check("a missing file is remembered under .no_exist", no_exist)

    def traffic():
        lines = log_path.read_text().splitlines()
        assert any(l.startswith("cdn GET /repos/") and l.endswith("→ 200") for l in lines), "no CDN download"
        assert any(l.startswith("hub HEAD /acme/vit-tiny/resolve/main/config.json") and l.endswith("→ 307") for l in lines)
        assert any(l.startswith("hub HEAD /api/resolve-cache/models/acme/vit-tiny/") and l.endswith("→ 200") for l in lines)
        assert not any(l.startswith("cdn HEAD") for l in lines), "the client followed the 302 to the CDN on HEAD"
        return f"{len(lines) - 1} requests; HEAD stopped at the 302, GETs went to the CDN"
    check("requests took the Hub's paths", traffic)

    # vitrine's own downloads (src/bin/vitrine/fetch.rs), into a second
    # cache: huggingface_hub must find them; and vitrine, offline, must
    # find what huggingface_hub downloaded above.
    vitrine = os.environ.get("VITRINE_BIN", str(Path.home() / ".cache/vitrine/target/release/vitrine"))
    theirs = tmp / "vitrine-cache"

    def run_vitrine(*args, cache_dir, offline="0"):
        env = {**os.environ, "HF_HUB_CACHE": str(cache_dir), "HF_HUB_OFFLINE": offline}
        return subprocess.run([vitrine, *args], capture_output=True, text=True, env=env, timeout=120)

    def vitrine_cache_is_huggingface_hubs():
        r = run_vitrine("fetch", "acme/vit-tiny", cache_dir=theirs)
        assert r.returncode == 0, r.stderr
        for filename, want in [("config.json", config), ("model.safetensors", weights)]:
            got = hf_hub_download("acme/vit-tiny", filename, cache_dir=theirs, local_files_only=True)
            assert Path(got).read_bytes() == want, f"{filename}: other bytes"
            assert str(Path(got).parent) == r.stdout.strip(), f"{got} is not under {r.stdout.strip()}"
        missing = huggingface_hub.try_to_load_from_cache("acme/vit-tiny", "preprocessor_config.json", cache_dir=theirs)
        assert missing is huggingface_hub.file_download._CACHED_NO_EXIST, f"not remembered as absent: {missing}"
        return "hf_hub_download(local_files_only=True) finds each file; the absence is remembered"
    check("huggingface_hub reads the cache vitrine fetch wrote", vitrine_cache_is_huggingface_hubs)

    def huggingface_hubs_cache_is_vitrines():
        r = run_vitrine("fetch", "acme/vit-tiny", cache_dir=cache, offline="1")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(cache / "models--acme--vit-tiny" / "snapshots" / commit), r.stdout
        return "offline, the snapshot huggingface_hub made"
    check("vitrine reads the cache huggingface_hub wrote", huggingface_hubs_cache_is_vitrines)

    server.terminate()
    server.wait(5)
    log.close()
    if failures:
        print(f"{failures} check(s) failed; the stand-in's log is {log_path}")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
