"""The watched set: which apps and branches the daemon follows, and each branch's last state.

In memory only: the poller fills it from API answers and the store, the scheduler reads it for
readiness and progress. Owns the `[[targets]]` matching rules (app id, branch globs).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.config import Target
from monitor.model import App, Branch, BranchKey, BranchState


def _app_targets(targets: Iterable[Target], app_id: str) -> list[Target]:
    return [t for t in targets if t.app_id in ("*", app_id)]


def _branch_matches(targets: Iterable[Target], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for t in targets for glob in t.branches)


@dataclass(frozen=True)
class Progress:
    """How far the first full poll is: apps listed, branches with a state."""

    apps_listed: int
    apps: int
    branches_baselined: int
    branches: int


class Watched:
    def __init__(self, targets: tuple[Target, ...], states: dict[BranchKey, BranchState]) -> None:
        self.targets = targets
        self.states = states
        self.apps: dict[str, App] = {}
        self.branches: dict[BranchKey, Branch] = {}
        # Apps whose ListBranches answered at least once (their branch list is known).
        self.listed: set[str] = set()
        # Per app: the branches of its last listing, and those only remembered from the store
        # (indexes, so per-app questions cost the app's size, not the fleet's).
        self._listed_branches: dict[str, set[BranchKey]] = {}
        self._remembered: dict[str, set[BranchKey]] = {}
        for key in states:
            self._remembered.setdefault(key.app_id, set()).add(key)

    def targeted_apps(self, listed: Iterable[App]) -> dict[str, App]:
        return {a.app_id: a for a in listed if _app_targets(self.targets, a.app_id)}

    def missing_targets(self, apps: dict[str, App]) -> list[str]:
        """Apps named by id in `[[targets]]` that ListApps did not return."""
        return [t.app_id for t in self.targets if t.app_id != "*" and t.app_id not in apps]

    def targeted_branches(self, app: App, listed: Iterable[Branch]) -> dict[BranchKey, Branch]:
        targets = _app_targets(self.targets, app.app_id)
        return {b.key: b for b in listed if _branch_matches(targets, b.key.branch)}

    def targeted(self, key: BranchKey) -> bool:
        """Whether `[[targets]]` take in this branch (whether or not it exists)."""
        return _branch_matches(_app_targets(self.targets, key.app_id), key.branch)

    def known(self, app_id: str) -> set[BranchKey]:
        """An app's branches seen this run or remembered from a previous one."""
        return self._listed_branches.get(app_id, set()) | self._remembered.get(app_id, set())

    def set_branches(self, app_id: str, current: dict[BranchKey, Branch]) -> None:
        """The app's branches as just listed (after `forget_branch` for those that left)."""
        self.branches.update(current)
        self._listed_branches[app_id] = set(current)
        self._remembered.pop(app_id, None)
        self.listed.add(app_id)

    def forget_branch(self, key: BranchKey) -> None:
        self.branches.pop(key, None)
        self.states.pop(key, None)
        for index in (self._listed_branches, self._remembered):
            index.get(key.app_id, set()).discard(key)

    def forget_app(self, app_id: str) -> None:
        self.apps.pop(app_id, None)
        self.listed.discard(app_id)
        self._listed_branches.pop(app_id, None)
        self._remembered.pop(app_id, None)

    def adopt(self, app_id: str, states: dict[BranchKey, BranchState]) -> None:
        """Take the app's branch states as saved by its previous owner (another replica)."""
        self.disown(app_id)
        self.states.update(states)
        if app_id not in self.listed:
            self._remembered[app_id] = set(states)

    def disown(self, app_id: str) -> list[BranchKey]:
        """Forget the app's branch states: another replica polls it now. Returns their keys."""
        keys = [k for k in self.states if k.app_id == app_id]
        for key in keys:
            del self.states[key]
        return keys

    def baselined(self, app_id: str) -> bool:
        """Listed, and every one of its branches has a state: its first poll is complete."""
        if app_id not in self.listed:
            return False
        return all(k in self.states for k in self._listed_branches.get(app_id, ()))

    def progress(self) -> Progress:
        apps = set(self.apps)
        return Progress(
            apps_listed=len(self.listed & apps),
            apps=len(apps),
            branches_baselined=sum(1 for k in self.branches if k in self.states),
            branches=len(self.branches),
        )
