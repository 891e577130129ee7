"""Publishing staged datasets to the Hugging Face Hub through huggingface_hub.

Per dataset repo: read what the Hub has (its files, card and parquet footers: the card describes
everything in the repo), then create it private if missing and add the files it does not have yet
and the updated card, as **one commit** that only adds (files already on the Hub are never
re-uploaded or overwritten); then gather every repo of the export in a collection. The endpoint comes from
``HF_ENDPOINT`` (a local stand-in in the tests), the token from the usual places (``HF_TOKEN``, the
hub's login cache).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)

from agentcap_cli.export.captures import read_footer


@dataclass
class RepoPlan:
    """One dataset repo before the push: what is staged for it and what the Hub has already
    (read-only: nothing is created or uploaded while planning)."""

    repo_id: str
    staged: Path  # the dataset's staging dir: README is written here, data files below it
    files: list[str] = field(default_factory=list)  # paths in the repo (data/…, sessions/…)
    exists: bool = False
    remote: set[str] = field(default_factory=set)
    card: str | None = None  # the README on the Hub
    footers: list[dict[str, Any]] = field(default_factory=list)  # of the parquet files on the Hub

    @property
    def new(self) -> list[str]:
        return [f for f in self.files if f not in self.remote]


@dataclass
class RepoResult:
    repo_id: str
    created: bool
    uploaded: list[str]
    skipped: list[str]
    commit_url: str | None


def hub_api() -> HfApi:
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)


def _existing_card(api: HfApi, repo_id: str) -> str | None:
    with tempfile.TemporaryDirectory() as cache:
        try:
            path = hf_hub_download(repo_id, "README.md", repo_type="dataset", endpoint=api.endpoint,
                                   token=api.token, cache_dir=cache)
        except (EntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError):
            return None
        return Path(path).read_text(encoding="utf-8")


def remote_footers(api: HfApi, repo_id: str, paths: list[str]) -> list[dict[str, Any]]:
    """The agentcap footers of parquet files on the Hub, by ranged reads (only the footers travel)."""
    fs = HfFileSystem(endpoint=api.endpoint, token=api.token)
    out = []
    for path in paths:
        with fs.open(f"datasets/{repo_id}/{path}", "rb") as f:
            footer = read_footer(f)
        if footer:
            out.append(footer)
    return out


def plan_repo(api: HfApi, repo_id: str, staged: Path, files: list[str]) -> RepoPlan:
    """What the Hub has of ``repo_id``: its files, its card, its parquet files' footers."""
    plan = RepoPlan(repo_id, staged, files)
    try:
        api.repo_info(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return plan
    plan.exists = True
    plan.remote = set(api.list_repo_files(repo_id, repo_type="dataset"))
    plan.card = _existing_card(api, repo_id)
    parquet = sorted(f for f in plan.remote if f.endswith(".parquet") and f.split("/")[0] in ("data", "sessions"))
    plan.footers = remote_footers(api, repo_id, parquet)
    return plan


def push_repo(api: HfApi, plan: RepoPlan, message: str, say: Callable[[str], None]) -> RepoResult:
    """Create the repo (private) when missing, then add its new files and its card (the caller has
    written it to ``plan.staged / "README.md"``, every repo's before the first push) as one commit
    that only adds: files already on the Hub are never re-uploaded or overwritten. With no new file,
    the card alone when it changed (a new --license), else no commit."""
    created = False
    if not plan.exists:
        api.create_repo(plan.repo_id, repo_type="dataset", private=True, exist_ok=True)
        created = True
        say(f"created private dataset {plan.repo_id}")
    new, skipped = plan.new, [f for f in plan.files if f in plan.remote]
    card = plan.staged / "README.md"
    if not new and card.read_text(encoding="utf-8") == plan.card:
        return RepoResult(plan.repo_id, created, [], skipped, None)
    ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(plan.staged / f)) for f in new]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card)))
    say(f"uploading {len(new)} file(s) to {plan.repo_id}" if new else f"updating the card of {plan.repo_id}")
    info = api.create_commit(plan.repo_id, ops, commit_message=message, repo_type="dataset")
    return RepoResult(plan.repo_id, created, new, skipped, str(info.commit_url))


def gather(api: HfApi, owner: str, title: str, repo_ids: list[str]) -> str:
    """A private collection ``title`` in ``owner`` holding every repo (created / extended as needed)."""
    collection = api.create_collection(title=title, namespace=owner, private=True, exists_ok=True,
                                       description="Captures, sessions and traces exported by agentcap")
    have = {item.item_id for item in collection.items}
    for repo_id in repo_ids:
        if repo_id not in have:
            api.add_collection_item(collection.slug, item_id=repo_id, item_type="dataset", exists_ok=True)
    return collection.slug
