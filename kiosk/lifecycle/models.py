"""Change control (issue 16.4): which bundle of each task screens for staff, and how that changes.

The rules (docs/change-control.md):

- A task with no recorded active bundle (a fresh kiosk, or a task never run here) takes its
  newest verified bundle; that choice is recorded and audited (``model.activate``).
- A task with a recorded active bundle (version and manifest sha256) runs exactly that bundle
  while it verifies, whatever else is installed. Verified bundles of the task with a newer
  version are candidates; the newest candidate reads every recorded screening in shadow.
- When the active bundle is missing or fails verification, the previous active bundle runs if
  it verifies (``model.fallback``); otherwise the task is not screened (``model.unavailable``).
  A bundle nobody promoted never screens for staff.
- ``promote``: an installed, verified bundle becomes active and the active one becomes the
  previous one. ``rollback``: the previous bundle becomes active again, in one step.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engines.bundle import Bundle, load_all, load_bundle, version_key
from kiosk.config import Config
from kiosk.errors import BundleError, KioskError, NotFoundError
from kiosk.lifecycle.shadow import ShadowRunner
from kiosk.pipeline import Pipeline
from kiosk.store import Store
from kiosk.store import audit as audit_log
from kiosk.store import shadow as kept
from kiosk.store.shadow import BundleName, LineupRow

#: Who records the first activation of a task (no person chose it).
KIOSK = "kiosk"
#: Seconds a replaced pipeline stays open for the requests still screening with it.
RETIRE_AFTER_S = 120.0


class ChangeRefused(KioskError):
    """A promotion, rollback or installation that the rules do not allow."""

    code = "change_refused"
    http_status = 409


@dataclass
class Lineup:
    """Every verified bundle per task and the role the rules give it, as of ``stamp``."""

    installed: dict[str, list[Bundle]]  # per task, newest first
    refused: dict[Path, BundleError]
    recorded: dict[str, LineupRow]
    stamp: str
    active: dict[str, Bundle] = field(default_factory=dict)
    candidates: dict[str, Bundle] = field(default_factory=dict)  # the one in shadow, per task
    notes: dict[str, str] = field(default_factory=dict)  # per task: why it does not run as recorded

    def role(self, bundle: Bundle) -> str:
        """``active``, ``candidate`` (in shadow), ``previous`` (a rollback's target) or
        ``installed`` (verified, unused: promote it to use it)."""
        for role, chosen in (("active", self.active), ("candidate", self.candidates)):
            if bundle.task in chosen and name_of(chosen[bundle.task]) == name_of(bundle):
                return role
        row = self.recorded.get(bundle.task)
        if row is not None and row.previous == name_of(bundle):
            return "previous"
        return "installed"


def name_of(bundle: Bundle) -> BundleName:
    """How the store names a bundle."""
    return BundleName(bundle.version, bundle.sha256)


def words(name: BundleName | None) -> str:
    """A bundle's name for the audit log: version and the start of its sha256."""
    return "none" if name is None else f"{name.version} (sha256 {name.sha256[:12]})"


def survey(config: Config, store: Store) -> Lineup:
    """Verify every bundle, record an active one for each task that has none, apply the rules."""
    found, refused = load_all(config.models_dir, config.trusted_keys)
    installed: dict[str, list[Bundle]] = {}
    for bundle in sorted(found, key=lambda b: version_key(b.version), reverse=True):
        installed.setdefault(bundle.task, []).append(bundle)
    with store.db.write() as conn:
        for task, bundles in installed.items():
            if task not in kept.lineup(conn):
                kept.set_lineup(conn, task, name_of(bundles[0]), None, actor=KIOSK)
                audit_log.append(conn, KIOSK, "model.activate",
                                 detail=f"{task} {words(name_of(bundles[0]))}: no active version "
                                 "was recorded, so the newest verified bundle")
        lineup = Lineup(installed, refused, kept.lineup(conn), kept.lineup_stamp(conn))
    for task, row in lineup.recorded.items():
        _choose(lineup, task, row)
    return lineup


def _choose(lineup: Lineup, task: str, row: LineupRow) -> None:
    """The task's active bundle by the rules, its candidate, and a note when it falls back."""
    bundles = lineup.installed.get(task, [])
    active = _find(bundles, row.active)
    if active is None:
        active = _find(bundles, row.previous) if row.previous else None
        lineup.notes[task] = (
            f"{task}: the active bundle {words(row.active)} is missing or fails verification; "
            + (f"the previous one {words(row.previous)} runs instead" if active is not None
               else "no promoted bundle verifies, so this task is not screened"))
    if active is None:
        return
    lineup.active[task] = active
    newer = [b for b in bundles if version_key(b.version) > version_key(active.version)]
    if newer:
        lineup.candidates[task] = newer[0]


def _find(bundles: list[Bundle], name: BundleName | None) -> Bundle | None:
    """The verified bundle with this version and sha256, if installed."""
    return next((b for b in bundles if name is not None and name_of(b) == name), None)


def active_bundles(config: Config, store: Store) -> tuple[dict[str, Bundle], dict[Path, BundleError]]:
    """The active bundle per task and the refused ones: what screens for staff, for the figures
    about it (drift, site calibration, fleet reports), in place of the newest per task."""
    current = survey(config, store)
    return current.active, current.refused


def stamp(store: Store) -> str:
    """Changes whenever an active bundle is recorded, promoted or rolled back."""
    with store.db.read() as conn:
        return kept.lineup_stamp(conn)


def open_pipeline(config: Config, store: Store, lineup: Lineup,
                  settle: Callable[[Pipeline], None] = lambda _: None, *,
                  shadow: bool = True) -> Pipeline:
    """The pipeline of the active bundles, with the candidates in shadow behind it (unless
    ``shadow`` is False: a caller that records nothing, like ``kiosk screen``).

    ``settle`` gives a pipeline the clinic's settings (prevalence, operating point); it is
    applied to the candidates too, so they are compared under the same conditions.
    """
    _audit_notes(store, lineup)
    if not lineup.active:
        reasons = "; ".join([*lineup.notes.values(), *(e.message for e in lineup.refused.values())])
        raise BundleError(f"no active model bundle in {config.models_dir} "
                          f"({reasons or 'none found'})", code="no_model")
    pipeline = Pipeline.from_config(config, (lineup.active, lineup.refused))
    if lineup.candidates and shadow:
        pipeline.shadow = ShadowRunner(config, store, lineup.candidates, settle)
    return pipeline


def _audit_notes(store: Store, lineup: Lineup) -> None:
    """Say in the audit log, at each load, which task runs other than as recorded."""
    if not lineup.notes:
        return
    with store.db.write() as conn:
        for task, note in sorted(lineup.notes.items()):
            action = "model.fallback" if task in lineup.active else "model.unavailable"
            audit_log.append(conn, KIOSK, action, detail=note)


class Retired:
    """A pipeline replaced after a promotion or rollback, closed once its last requests are done
    (``RETIRE_AFTER_S`` later, or at shutdown, whichever comes first; never twice)."""

    def __init__(self, pipeline: Pipeline, after_s: float | None = None) -> None:
        self._pipeline: Pipeline | None = pipeline
        self._lock = threading.Lock()
        self._timer = threading.Timer(RETIRE_AFTER_S if after_s is None else after_s, self.close)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Release the pipeline's engines, decode workers and shadow (once)."""
        self._timer.cancel()
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    @property
    def closed(self) -> bool:
        """Whether the pipeline was released."""
        return self._pipeline is None


def install(config: Config, store: Store, source: Path, *, actor: str) -> Bundle:
    """Verify a bundle and copy it into the models folder; it never becomes active by itself."""
    bundle = load_bundle(source, config.trusted_keys)
    target = config.models_dir / (source.name if source.suffix == ".tar"
                                  else f"{bundle.task}-{bundle.version}")
    current = survey(config, store)
    if any(b.version == bundle.version for b in current.installed.get(bundle.task, [])):
        raise ChangeRefused(f"{bundle.task} {bundle.version} is already installed: a changed "
                            "bundle needs a new version", code="already_installed")
    if target.exists():
        raise ChangeRefused(f"{target} exists already", code="already_installed")
    config.models_dir.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(bundle.path, target)
    else:
        shutil.copyfile(source, target)
    load_bundle(target, config.trusted_keys)  # the copy verifies too, or nothing is recorded
    role = survey(config, store).role(bundle)
    with store.db.write() as conn:
        kept.note_install(conn, actor=actor)
        audit_log.append(conn, actor, "model.install",
                         detail=f"{bundle.task} {words(name_of(bundle))} from {source.name}: {role}")
    return bundle


def promote(config: Config, store: Store, task: str, version: str, *, actor: str) -> Lineup:
    """Make the installed bundle ``task`` ``version`` the active one; the active one becomes
    the previous one (the rollback's target)."""
    current = survey(config, store)
    chosen = [b for b in current.installed.get(task, []) if b.version == version]
    if not chosen:
        raise NotFoundError(f"no verified bundle {task} {version} is installed "
                            f"(installed: {_versions(current, task)})")
    if len(chosen) > 1:
        raise ChangeRefused(f"{len(chosen)} bundles claim {task} {version}: remove all but one")
    active = current.active.get(task)
    if active is not None and name_of(active) == name_of(chosen[0]):
        raise ChangeRefused(f"{task} {version} is already the active bundle")
    before = name_of(active) if active is not None else None
    return _switch(config, store, task, name_of(chosen[0]), before, actor=actor,
                   action="model.promote")


def rollback(config: Config, store: Store, task: str, *, actor: str) -> Lineup:
    """Make the previous bundle of ``task`` active again; the one it replaces becomes previous."""
    current = survey(config, store)
    row = current.recorded.get(task)
    if row is None or row.previous is None:
        raise ChangeRefused(f"{task} has no previous bundle to roll back to")
    if _find(current.installed.get(task, []), row.previous) is None:
        raise ChangeRefused(f"the previous bundle {task} {words(row.previous)} is not installed "
                            "or fails verification: install it again first")
    return _switch(config, store, task, row.previous, row.active, actor=actor,
                   action="model.rollback")


def _switch(config: Config, store: Store, task: str, active: BundleName,
            previous: BundleName | None, *, actor: str, action: str) -> Lineup:
    """Record the new active bundle and the previous one, audited in the same transaction."""
    with store.db.write() as conn:
        kept.set_lineup(conn, task, active, previous, actor=actor)
        audit_log.append(conn, actor, action,
                         detail=f"{task}: {words(previous)} -> {words(active)}")
    return survey(config, store)


def _versions(lineup: Lineup, task: str) -> str:
    """The installed versions of a task, for a message."""
    return ", ".join(b.version for b in lineup.installed.get(task, [])) or "none"
