"""The chart's CDS Hooks parts: patient-view cards above the app, and the "Order ZOLGENSMA" form
with order-select, accepting or overriding a card, and order-sign.

Endpoints (forms only, each with the EHR's CSRF token; every POST answers 303 to the orders page):
- `GET /chart/<launch_id>/orders`: the draft orders and the last cards;
- `POST /chart/<launch_id>/orders`: new draft orders, then order-select;
- `POST /chart/<launch_id>/orders/accept`: apply a suggestion, feedback, order-select again;
- `POST /chart/<launch_id>/orders/override`: feedback with the chosen override reason;
- `POST /chart/<launch_id>/orders/sign`: order-sign (nothing is written to the FHIR server).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, redirect, render_template, request, url_for

from smart_app.rules import label
from smart_app.sandbox import cds_orders
from smart_app.sandbox.cds_cards import Card, Link, LinkType
from smart_app.sandbox.cds_client import (
    SERVICE_GRANT_LIFETIME_S,
    SERVICE_READ_SCOPE,
    EhrCdsClient,
    Hook,
    ServiceToken,
)
from smart_app.sandbox.cds_orders import OrderSession, OrderStore
from smart_app.sandbox.oauth.grants import SandboxOAuth
from smart_app.sandbox.oauth.routes import csrf_ok, csrf_token
from smart_app.sandbox.settings import EhrSettings, SandboxClient

DEFAULT_LEAD_DAYS = 7
"""The order form's planned infusion date starts this many days ahead (a form default only: the
app decides what date is practical)."""
NOT_WRITTEN = (
    "Signing here does not write the order to the FHIR server: the sandbox keeps draft orders in "
    "memory only, because a live ZOLGENSMA order on the chart would read as a prior dose."
)


def _launch_base(url: str) -> str:
    """A URL without its query and fragment."""
    return url.split("#", 1)[0].split("?", 1)[0].rstrip("/")


class ChartCds:
    """The sandbox EHR's CDS Hooks client per registered app, and the chart's order entry."""

    def __init__(
        self,
        *,
        settings: EhrSettings,
        oauth: SandboxOAuth,
        clients: Mapping[str, SandboxClient],
    ) -> None:
        """One CDS client for each registered app that names its CDS services."""
        self.settings = settings
        self.oauth = oauth
        self.clients = clients
        self.orders = OrderStore(clock=settings.clock)
        self.cds: dict[str, EhrCdsClient] = {
            c.client_id: self._client(c) for c in clients.values() if c.cds_services_url
        }

    def _client(self, client: SandboxClient) -> EhrCdsClient:
        """The CDS Hooks client for one app's services."""

        def issue(patient_id: str) -> ServiceToken:
            """A short-lived read token for the patient, for the app's CDS service."""
            raw = self.oauth.issue_service_token(
                client_id=client.client_id,
                patient_id=patient_id,
                scope=SERVICE_READ_SCOPE,
                lifetime_s=SERVICE_GRANT_LIFETIME_S,
            )
            return ServiceToken(raw, SERVICE_GRANT_LIFETIME_S, SERVICE_READ_SCOPE)

        return EhrCdsClient(
            services_url=client.cds_services_url,
            public_base=self.settings.public_base,
            fhir_upstream=self.settings.fhir_upstream,
            key=self.settings.cds_key,
            issue_token=issue,
            service_client_id=client.client_id,
            clock=self.settings.clock,
        )

    @property
    def user_id(self) -> str:
        """The signed-in clinician as a hook context's userId."""
        return f"Practitioner/{self.settings.practitioner_id}"

    def _today(self) -> dt.date:
        """The EHR's date (UTC)."""
        return dt.datetime.fromtimestamp(self.settings.clock(), tz=dt.UTC).date()

    def _now(self) -> str:
        """The EHR's time, for authoredOn."""
        moment = dt.datetime.fromtimestamp(self.settings.clock(), tz=dt.UTC)
        return moment.replace(microsecond=0).isoformat()

    def smart_client(self, link: Link) -> SandboxClient | None:
        """The registered app a `smart` link launches (by its launch URL)."""
        if link.type is not LinkType.SMART:
            return None
        target = _launch_base(link.url)
        return next(
            (c for c in self.clients.values() if _launch_base(c.launch_url) == target), None
        )

    def form_values(self, launch_id: str) -> dict[str, Any]:
        """What the order form needs: the kits, a default date, the form's target."""
        return {
            "kits": [(k.ndc, cds_orders.kit_choice(k)) for k in label.kits()],
            "default_infusion_date": (
                self._today() + dt.timedelta(days=DEFAULT_LEAD_DAYS)
            ).isoformat(),
            "orders_url": url_for("cds_orders", launch_id=launch_id),
        }

    def chart(self, launch_id: str, *, client_id: str, patient_id: str) -> dict[str, Any]:
        """The chart's CDS values: patient-view cards and the order form (none without CDS)."""
        cds = self.cds.get(client_id)
        if cds is None:
            return {"cds": None}
        self.orders.open(launch_id, patient_id=patient_id, client_id=client_id)
        answer = cds.call(
            Hook.PATIENT_VIEW,
            context={"userId": self.user_id, "patientId": patient_id},
            patient_id=patient_id,
        )
        return {
            "cds": answer,
            "cds_csrf": csrf_token(),
            "smart_client": self.smart_client,
            "card_actions": False,
            **self.form_values(launch_id),
        }

    # order entry -------------------------------------------------------------------------

    def _context(self, session: OrderSession, hook: Hook) -> dict[str, Any]:
        """The hook context for the drafts: selections only for order-select."""
        context: dict[str, Any] = {"userId": self.user_id, "patientId": session.patient_id}
        if hook is Hook.ORDER_SELECT:
            context["selections"] = session.selections()
        context["draftOrders"] = session.bundle()
        return context

    def fire(self, session: OrderSession, hook: Hook) -> None:
        """Call a hook on the drafts and keep its answer as the one shown."""
        cds = self.cds[session.client_id]
        if not session.orders:
            session.answer, session.hook, session.handled = None, None, {}
            return
        session.answer = cds.call(
            hook, context=self._context(session, hook), patient_id=session.patient_id
        )
        session.hook, session.handled = hook, {}

    def register(self, app: Flask, *, problem: Any) -> None:
        """Add the order-entry views to the EHR."""

        def session_for(launch_id: str) -> OrderSession | None:
            """The chart's order session, if it has CDS services."""
            found = self.orders.get(launch_id)
            return found if found is not None and found.client_id in self.cds else None

        def after(launch_id: str) -> Response:
            """Back to the orders page (post, redirect, get)."""
            return redirect(url_for("cds_orders", launch_id=launch_id), code=303)

        def checked(launch_id: str) -> OrderSession | tuple[str, int]:
            """The session of a POST with a valid CSRF token, or the error page."""
            if not csrf_ok(request.form.get("csrf_token")):
                return problem("Form expired", "The order form expired. Open the chart again.")
            found = session_for(launch_id)
            if found is None:
                return problem(
                    "Chart not found", "This chart is unknown or expired. Launch again.", status=404
                )
            return found

        @app.get("/chart/<launch_id>/orders", endpoint="cds_orders")
        def orders_page(launch_id: str) -> str | tuple[str, int]:
            """The draft orders, the last cards with their suggestions, and the sign button."""
            found = session_for(launch_id)
            if found is None:
                return problem(
                    "Chart not found", "This chart is unknown or expired. Launch again.", status=404
                )
            patients = {p.patient_id: p for p in self.settings.patients}
            with found.lock:
                return render_template(
                    "orders.html",
                    patient=patients.get(found.patient_id),
                    patient_id=found.patient_id,
                    session=found,
                    orders=list(found.orders.values()),
                    cards=found.open_cards(),
                    cds=found.answer,
                    cds_csrf=csrf_token(),
                    card_actions=True,
                    smart_client=self.smart_client,
                    launch_id=launch_id,
                    not_written=NOT_WRITTEN,
                    sign_state=_sign_state(found),
                    medication_text=cds_orders.medication_text,
                    order_date=cds_orders.order_date,
                    **self.form_values(launch_id),
                )

        @app.post("/chart/<launch_id>/orders", endpoint="cds_order_new")
        def order_new(launch_id: str) -> Response | tuple[str, int]:
            """New draft orders from the form, then order-select."""
            found = checked(launch_id)
            if not isinstance(found, OrderSession):
                return found
            kit = cds_orders.kit_by_ndc(request.form.get("ndc", ""))
            try:
                infusion = dt.date.fromisoformat(request.form.get("infusion_date", ""))
            except ValueError:
                infusion = None
            with found.lock:
                if kit is None or infusion is None:
                    found.message = (
                        "Choose a kit from the list."
                        if kit is None
                        else "Give the planned infusion date as YYYY-MM-DD."
                    )
                    found.problem = True
                    return after(launch_id)
                common = {
                    "patient_id": found.patient_id,
                    "practitioner_id": self.settings.practitioner_id,
                    "infusion_date": infusion,
                    "authored_on": self._now(),
                }
                order = cds_orders.kit_order(kit, **common)
                drafts = [order]
                if request.form.get("prednisolone"):
                    drafts.append(cds_orders.prednisolone_order(**common))
                found.start(drafts, selected=order)
                self.fire(found, Hook.ORDER_SELECT)
                found.message, found.problem = f"Draft order: kit {kit.ndc}.", False
            return after(launch_id)

        @app.post("/chart/<launch_id>/orders/accept", endpoint="cds_accept")
        def accept(launch_id: str) -> Response | tuple[str, int]:
            """Apply a suggestion, send feedback, then call the same hook again."""
            found = checked(launch_id)
            if not isinstance(found, OrderSession):
                return found
            with found.lock:
                card = _card(found, request.form.get("card", ""))
                suggestion = card.suggestion(request.form.get("suggestion", "")) if card else None
                if card is None or suggestion is None or found.hook is None:
                    found.message, found.problem = "That card is no longer shown.", True
                    return after(launch_id)
                done = found.apply(suggestion)
                found.handled[card.uuid] = "accepted"
                self.cds[found.client_id].feedback(card, accepted=[suggestion.uuid])
                self.fire(found, found.hook)
                found.message = f"Accepted: {suggestion.label}." + (
                    f" {'; '.join(done)}." if done else ""
                )
                found.problem = False
            return after(launch_id)

        @app.post("/chart/<launch_id>/orders/override", endpoint="cds_override")
        def override(launch_id: str) -> Response | tuple[str, int]:
            """Record an override (feedback with the reason) and set the card aside."""
            found = checked(launch_id)
            if not isinstance(found, OrderSession):
                return found
            with found.lock:
                card = _card(found, request.form.get("card", ""))
                reason = card.override_reason(request.form.get("reason", "")) if card else None
                if card is None or reason is None:
                    found.message, found.problem = "Choose an override reason on the card.", True
                    return after(launch_id)
                comment = request.form.get("comment", "").strip()[:500]
                self.cds[found.client_id].feedback(card, override=reason, comment=comment)
                found.handled[card.uuid] = f"overridden: {reason.display or reason.code}"
                found.message = f"Overridden ({reason.display or reason.code}): {card.summary}"
                found.problem = False
            return after(launch_id)

        @app.post("/chart/<launch_id>/orders/sign", endpoint="cds_sign")
        def sign(launch_id: str) -> Response | tuple[str, int]:
            """order-sign on the drafts; nothing is written to the FHIR server."""
            found = checked(launch_id)
            if not isinstance(found, OrderSession):
                return found
            with found.lock:
                if not found.orders:
                    found.message, found.problem = "There is no draft order to sign.", True
                    return after(launch_id)
                self.fire(found, Hook.ORDER_SIGN)
                found.message, found.problem = "order-sign answered.", False
            return after(launch_id)


def _sign_state(session: OrderSession) -> str | None:
    """ "signed" or "blocked" after order-sign; None before."""
    if session.hook is not Hook.ORDER_SIGN:
        return None
    return "signed" if session.signed else "blocked"


def _card(session: OrderSession, uuid: str) -> Card | None:
    """The shown card with this uuid."""
    if not uuid:
        return None
    return next((c for c in session.open_cards() if c.uuid == uuid), None)
