"""The words the browser script (static/kiosk.js) shows, in the reader's language.

The script is a static file, so it cannot be translated by the catalogues itself: every page
carries these words, translated, in a ``<meta name="kiosk-words">`` tag (JSON), and the script
reads them from there. English stays in the script only as the fallback for a page without it.
"""

from __future__ import annotations

from flask_babel import gettext as _


def script_words() -> dict[str, str]:
    """Key -> translated text, for kiosk.js (the keys are the script's own names)."""
    return {
        "checking": _("Checking the image…"),
        "could_not_check": _("Could not check the image now; it will be checked on sending."),
        "check_failed": _("Could not check this image"),
        "photo_ok": _("✓ The photo is clear enough to screen"),
        "film_ok": _("✓ The X-ray is clear enough to screen"),
        "check_this": _("Check:"),
        "sending": _("Sending the images…"),
        "screening": _("Screening… this takes a few seconds."),
        "no_answer": _("The kiosk did not answer. Your photos are still here: press the button "
                       "again."),
        "relogin_title": _("Log in again to send the photos"),
        "relogin_why": _("You were logged off. The photos you chose are kept on this page: log in "
                         "and they are sent."),
        "user_name": _("User name"),
        "password": _("Password"),
        "log_in_and_send": _("Log in and send"),
        "wrong_login": _("User name or password is wrong."),
        "show_original": _("Show the original"),
        "show_film": _("Show the X-ray"),
        "show_heatmap": _("Show the heat-map"),
        "zoom": _("Zoom"),
        "window": _("Window (contrast)"),
        "level": _("Level (brightness)"),
    }
