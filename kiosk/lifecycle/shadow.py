"""Shadow mode (issue 16.4): candidate bundles read every recorded screening, unseen by staff.

After a screening is recorded (its active results kept, its outbox items queued, the nurse's
page already on its way), :class:`ShadowRunner` hands the screening's decoded images to a second
pipeline holding the candidate bundles, on one worker thread. Their results go to the store's
``shadow_results`` table with the candidate's exact version and sha256, linked to the
screening and to the position of the active result each one shadows. No page, report or outbox
writer reads that table.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from engines.base import open_engine
from engines.bundle import Bundle
from kiosk.config import Config
from kiosk.pipeline import ImageOutcome, Model, Pipeline
from kiosk.store import Store
from kiosk.store import audit as audit_log
from kiosk.store import shadow as kept

log = logging.getLogger(__name__)

#: Who writes the shadow results in the audit log.
ACTOR = "kiosk"
#: How long closing waits for the shadow readings still queued (a CLI run, a shutdown).
CLOSE_WAIT_S = 120.0
#: CPU inference threads of a candidate: one, so it holds at most one core while the next
#: visit is screened (bench/shadow.py measures its cost: docs/change-control.md).
THREADS = 1


@dataclass(frozen=True)
class _Job:
    """One recorded screening's outcomes (in the order of its results), waiting to be read."""

    screening_id: int
    outcomes: list[ImageOutcome]
    age_years: float | None


class ShadowRunner:
    """The candidate bundles, read one screening at a time on their own thread.

    Best effort by design: a candidate that fails to load or to run is logged and its readings
    are missing from the report; it never delays or fails a screening.
    """

    def __init__(self, config: Config, store: Store, candidates: dict[str, Bundle],
                 settle: Callable[[Pipeline], None] = lambda _: None) -> None:
        self.config, self.store = config, store
        self.candidates = dict(candidates)
        self._settle = settle
        self._pipeline: Pipeline | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="kiosk-shadow", daemon=True)
        self._thread.start()

    def submit(self, screening_id: int, outcomes: list[list[ImageOutcome]],
               age_years: float | None) -> None:
        """Queue a recorded screening's outcomes (per image, per task) for the candidates."""
        flat = [outcome for per_image in outcomes for outcome in per_image]
        if any(outcome.result.get("task") in self.candidates for outcome in flat):
            self._jobs.put(_Job(screening_id, flat, age_years))

    def drain(self) -> None:
        """Wait until every queued screening was read (tests, ``kiosk screen``)."""
        self._jobs.join()

    def close(self) -> None:
        """Read what is queued, then stop the thread and release the candidates' engines."""
        self._jobs.put(None)
        self._thread.join(CLOSE_WAIT_S)
        if self._pipeline is not None:
            self._pipeline.close()

    def _work(self) -> None:
        """The worker: open the candidates, then read each queued screening."""
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._read(job)
            except Exception:  # a shadow failure must never reach a screening
                log.exception("shadow reading of screening %s failed", job and job.screening_id)
            finally:
                self._jobs.task_done()

    def _open(self) -> Pipeline:
        """The candidates' pipeline (engines opened on first use, on this thread)."""
        if self._pipeline is None:
            config = replace(self.config, threads=THREADS)
            models = {task: Model(bundle, open_engine(bundle, config))
                      for task, bundle in self.candidates.items()}
            pipeline = Pipeline(self.config, models)
            self._settle(pipeline)
            self._pipeline = pipeline
        return self._pipeline

    def _read(self, job: _Job) -> None:
        """Read one screening's images with the candidates and keep their results."""
        again = self._open().read_again(job.outcomes, age_years=job.age_years)
        read = [(position, outcome) for position, outcome in enumerate(again) if outcome]
        if not read:
            return
        with self.store.db.write() as conn:
            for position, outcome in read:
                kept.insert_shadow(conn, job.screening_id, position, outcome.result)
            names = sorted({f"{o.result['task']} {o.result['model']['version']}"  # type: ignore[index]
                            for _, o in read})
            audit_log.append(conn, ACTOR, "model.shadow",
                             detail=f"screening {job.screening_id}: {len(read)} shadow result(s) "
                             f"by {', '.join(names)}")
