"""Publishing staged datasets to the Hugging Face Hub through huggingface_hub.

Per dataset repo: create it private if missing, add the data files it does not have yet and the
updated card, as **one commit** that only adds (files already on the Hub are never re-uploaded or
overwritten); then gather every repo of the export in a collection. The endpoint comes from
``HF_ENDPOINT`` (a local stand-in in the tests), the token from the usual places (``HF_TOKEN``, the
hub's login cache).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError

from agentcap_cli.export.cards import CardInfo, update


@dataclass
class RepoPlan:
    repo_id: str
    staged: Path  # the dataset's staging dir: README is written here, data/*.parquet
    card: CardInfo
    files: list[str] = field(default_factory=list)  # paths in the repo (data/…)


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


def push_repo(api: HfApi, plan: RepoPlan, message: str, say: Callable[[str], None]) -> RepoResult:
    created = False
    try:
        api.repo_info(plan.repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        api.create_repo(plan.repo_id, repo_type="dataset", private=True, exist_ok=True)
        created = True
        say(f"created private dataset {plan.repo_id}")
    remote = set(api.list_repo_files(plan.repo_id, repo_type="dataset")) if not created else set()
    new = [f for f in plan.files if f not in remote]
    skipped = [f for f in plan.files if f in remote]
    if not new:
        return RepoResult(plan.repo_id, created, [], skipped, None)
    card = update(None if created else _existing_card(api, plan.repo_id), plan.card)
    (plan.staged / "README.md").write_text(card, encoding="utf-8")
    ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(plan.staged / f)) for f in new]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(plan.staged / "README.md")))
    say(f"uploading {len(new)} file(s) to {plan.repo_id}")
    info = api.create_commit(plan.repo_id, ops, commit_message=message, repo_type="dataset")
    return RepoResult(plan.repo_id, created, new, skipped, str(info.commit_url))


def gather(api: HfApi, owner: str, title: str, repo_ids: list[str]) -> str:
    """A private collection ``title`` in ``owner`` holding every repo (created / extended as needed)."""
    collection = api.create_collection(title=title, namespace=owner, private=True, exists_ok=True,
                                       description="Captures and traces exported by agentcap")
    have = {item.item_id for item in collection.items}
    for repo_id in repo_ids:
        if repo_id not in have:
            api.add_collection_item(collection.slug, item_id=repo_id, item_type="dataset", exists_ok=True)
    return collection.slug
