"""The model at this site (issue 16.2, 16.3): site validation, its threshold, and surveillance.

Admins validate a task's model on the clinic's labelled images (a folder and a CSV copied onto
the kiosk, or the clinicians' own decisions), look at the figures and the proposed threshold
beside the one in force, apply it or undo it; all of it is audited by kiosk/lifecycle/. The same
page shows the running estimates from the clinicians' decisions and any alarm. Clinicians enter
a referral's outcome for a screening on its own small page, linked from the result page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from kiosk.errors import BundleError, KioskError
from kiosk.lifecycle import surveillance, validation
from kiosk.pipeline import Pipeline
from kiosk.result import Result
from kiosk.store import lifecycle as kept
from kiosk.store.lifecycle import OUTCOMES, SiteValidation
from web.security import audit, requires
from web.services import services
from web.words import N_

#: Why images of a labelled set were left out (kiosk/lifecycle/validation.py), in words.
LEFT_OUT = {"refused": N_("refused by intake"), "ungradable": N_("not gradable"),
            "another model version": N_("read by another model version"),
            "no verdict to learn from": N_("the clinician gave no verdict to learn from")}

bp = Blueprint("site", __name__, url_prefix="/admin/site")


class SiteFormError(KioskError):
    """A site validation form is incomplete or names something that is not there."""

    code = "bad_site_form"
    http_status = 400


@bp.app_template_global()
def site_calibration_line(result: Result) -> str:
    """ "Calibrated at this site on <date>, n = ..." for a result made at a site threshold."""
    model = result.get("model")
    site = model.get("site_calibration") if model else None
    if not site:
        return ""
    return _("Calibrated at this site on %(date)s, n = %(n)s.", date=site["date"],
             n=site["n_positive"] + site["n_negative"])


@bp.get("/")
@requires("admin")
def index() -> ResponseReturnValue:
    """Per task: the threshold in force; the validation runs; the running estimates."""
    svc = services()
    with svc.store.db.read() as conn:
        runs = kept.validations(conn)
    audit("view_site_validation")
    return render_template("site.html", tasks=_tasks(), runs=runs,
                           watch=surveillance.summary(svc.store),
                           minimums=(validation.MIN_POSITIVES, validation.MIN_NEGATIVES))


def _tasks() -> list[dict[str, Any]]:
    """Per loaded task: its title, the point in force, and the site validation in force."""
    svc = services()
    try:
        pipeline = svc.pipeline
    except KioskError:  # no model loaded: the runs and the surveillance figures still show
        return []
    with svc.store.db.read() as conn:
        in_force = {task: kept.in_force(conn, task) for task in pipeline.tasks()}
    return [{"task": task, "title": pipeline.task(task).title,
             "version": pipeline.models[task].bundle.version,
             "point": pipeline.operating_point(task), "site": run,
             "stale": run is not None
             and run.model_sha256 != pipeline.models[task].bundle.sha256}
            for task, run in in_force.items()]


@bp.post("/validate")
@requires("admin")
def validate() -> ResponseReturnValue:
    """Screen a labelled set with a task's model and keep the report (nothing changes yet)."""
    svc = services()
    form = request.form
    task = form.get("task", "")
    pipeline = _pipeline(task)
    if task not in pipeline.tasks():
        raise SiteFormError(_("No model is loaded for %(task)s.", task=task))
    target = _target(form.get("target", "90"))
    if form.get("source") == "sign_offs":
        scored = validation.from_sign_offs(svc.store, task, pipeline.models[task].bundle.sha256)
    else:
        labels = Path(form.get("labels", "").strip())
        if not labels.is_file():
            raise SiteFormError(_("No labels file at %(path)s on this kiosk.", path=str(labels)))
        folder = Path(form.get("folder", "").strip() or labels.parent)
        scored = validation.screen_folder(pipeline, task, folder, validation.read_labels(labels))
    figures = validation.report(pipeline, task, scored, target=target)
    run = validation.keep(svc.store, figures, actor=current_user.username,
                          source="sign_offs" if form.get("source") == "sign_offs" else "folder")
    return redirect(url_for("site.run", run_id=run.id))


def _pipeline(task: str) -> Pipeline:
    """The loaded pipeline; with no verified bundle at all, a form error (not a 503 page)."""
    try:
        return services().pipeline
    except BundleError as exc:
        raise SiteFormError(_("No model is loaded for %(task)s.", task=task)) from exc


def _target(raw: str) -> float:
    """ "90" or "90%" -> 0.90, refusing values outside (50, 100)."""
    try:
        value = float(raw.rstrip("%").strip()) / 100.0
    except ValueError as exc:
        raise SiteFormError(_("The target sensitivity must be a number of percent, like 90.")) from exc
    if not 0.5 < value < 1.0:
        raise SiteFormError(_("The target sensitivity must be between 50 and 100 percent."))
    return value


@bp.get("/runs/<int:run_id>")
@requires("admin")
def run(run_id: int) -> ResponseReturnValue:
    """One validation's figures: the point in force beside the proposed one, before applying."""
    svc = services()
    with svc.store.db.read() as conn:
        chosen = kept.get_validation(conn, run_id)
    return render_template("site_run.html", run=chosen, figures=chosen.report,
                           can_apply=_can_apply(chosen), left_out=LEFT_OUT)


def _can_apply(run: SiteValidation) -> bool:
    """Whether the run proposes a threshold, for the bundle loaded now, not applied before."""
    try:
        pipeline = services().pipeline
    except BundleError:  # no model loaded: nothing can be applied
        return False
    return (run.applied is None and run.report["proposal"]["status"] == "proposed"
            and run.task in pipeline.tasks()
            and pipeline.models[run.task].bundle.sha256 == run.model_sha256)


@bp.post("/runs/<int:run_id>/apply")
@requires("admin")
def apply(run_id: int) -> ResponseReturnValue:
    """Put a run's proposed threshold in force for its task (audited)."""
    svc = services()
    with svc.store.db.read() as conn:
        task = kept.get_validation(conn, run_id).task
    applied = validation.apply(svc.store, run_id, actor=current_user.username,
                               pipeline=_pipeline(task))
    flash(_("%(task)s now uses the threshold calibrated at this site.", task=applied.task), "info")
    return redirect(url_for("site.index"))


@bp.post("/<task>/undo")
@requires("admin")
def undo(task: str) -> ResponseReturnValue:
    """Go back to the bundle's operating point for a task (audited)."""
    svc = services()
    validation.undo(svc.store, task, actor=current_user.username, pipeline=_pipeline(task))
    flash(_("%(task)s uses the model bundle's own operating point again.", task=task), "info")
    return redirect(url_for("site.index"))


@bp.route("/outcome/<int:screening_id>", methods=["GET", "POST"])
@requires("clinician", "admin")
def outcome(screening_id: int) -> ResponseReturnValue:
    """What the referral of a screening found, entered later (feeds surveillance)."""
    svc = services()
    screening = svc.store.get_screening(screening_id)
    if request.method == "POST":
        choice = request.form.get("outcome", "")
        if choice not in OUTCOMES:
            raise SiteFormError(_("Choose what the referral found."))
        surveillance.enter_outcome(svc.store, screening_id, choice,
                                   request.form.get("note", "").strip(),
                                   actor=current_user.username)
        flash(_("Referral outcome saved."), "info")
        return redirect(url_for("results.result", screening_id=screening_id))
    return render_template("outcome.html", screening=screening,
                           known=surveillance.outcome_of(svc.store, screening_id))
