"""The HTML HubSpot shows in the browser during an install: the consent screen and the
error page. Plain semantic HTML with labelled controls, so a browser test can drive it."""

from __future__ import annotations

from html import escape

from crm_sandbox.installs import Pending
from crm_sandbox.state import App, Portal, User

DECISION_PATH = "/oauth/authorize/decision"


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n'
        '<head><meta charset="utf-8"><title>' + escape(title) + "</title></head>\n"
        "<body>\n<main>\n" + body + "</main>\n</body>\n</html>\n"
    )


def error_page(title: str, message: str) -> str:
    return _document(
        title,
        f'<h1>{escape(title)}</h1>\n<p role="alert" id="error-message">{escape(message)}</p>\n',
    )


def consent_page(
    app: App, pending: Pending, portal: Portal, user: User, portals: list[Portal]
) -> str:
    options = "".join(
        f'<option value="{p.id}"{" selected" if p.id == portal.id else ""}>'
        f"{p.id} ({escape(p.domain)})</option>\n"
        for p in portals
    )
    scopes = "".join(f"<li><code>{escape(s)}</code></li>\n" for s in pending.scopes)
    body = (
        f"<h1>Connect {escape(app.name)} to HubSpot</h1>\n"
        f'<p>Signed in as <strong id="user-email">{escape(user.email)}</strong> '
        f'(user <span id="user-id">{user.id}</span>) in account '
        f'<strong id="portal-id">{portal.id}</strong>.</p>\n'
        f'<form method="post" action="{DECISION_PATH}">\n'
        f'<input type="hidden" name="request" value="{escape(pending.id)}">\n'
        '<p><label for="portalId">HubSpot account</label>\n'
        f'<select id="portalId" name="portalId">\n{options}</select></p>\n'
        '<section aria-labelledby="scopes-heading">\n'
        f'<h2 id="scopes-heading">{escape(app.name)} is requesting access to</h2>\n'
        f'<ul id="scopes">\n{scopes}</ul>\n</section>\n'
        '<p><button type="submit" name="decision" value="approve">Connect app</button>\n'
        '<button type="submit" name="decision" value="deny">Cancel</button></p>\n'
        "</form>\n"
    )
    return _document(f"Connect {app.name} to HubSpot", body)
