"""Who an invoice is for, in QuickBooks: the customer proposed for a CRM party, and the
customer a request names (an existing one, read and checked) or describes (found again by its
CRM record or e-mail address, or created under the first free display name)."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import (
    ExistingCustomer,
    InvoiceRequested,
    NewCustomer,
    RejectionCode,
)
from dealbooks_kit import Failure
from dealbooks_qbo import Customer, DuplicateName, NotFound, QboCompany

from invoice_builder import domain
from invoice_builder.deps import Deps, refused
from invoice_builder.domain import CrmParty, CustomerCandidate, CustomerMatch, Rejection
from invoice_builder.search import QboSearch
from invoice_builder.search import candidate as as_candidate


@dataclass
class ResolvedCustomer:
    customer: Customer
    created: bool

    @property
    def facts(self) -> CustomerCandidate:
        """The customer as the rules see it."""
        return as_candidate(self.customer)


def _q(value: str) -> str:
    """A string literal for the QBO query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Customers:
    deps: Deps

    def search(self, realm_id: str) -> QboSearch:
        """The wizard's searches over one company (bounded QuickBooks queries)."""
        return QboSearch(self.deps.qbo.company(realm_id))

    async def proposal(self, realm_id: str, party: CrmParty) -> CustomerMatch | None:
        """The best QuickBooks customer for a CRM party, if any is fair."""
        candidates = await self.search(realm_id).match_candidates(party)
        return domain.match_customer(party, candidates)

    async def choice(self, realm_id: str, party: CrmParty) -> ExistingCustomer | NewCustomer:
        """The matched QBO customer of a CRM party, or a new one built from it."""
        match = await self.proposal(realm_id, party)
        if match is not None:
            return ExistingCustomer(qbo_customer_id=match.customer.qbo_customer_id)
        return domain.new_customer_of(party)

    async def resolve(
        self, request: InvoiceRequested, company: QboCompany, portal_id: str
    ) -> ResolvedCustomer:
        """The QuickBooks customer of a request, made once however often this runs."""
        choice = request.customer
        if isinstance(choice, ExistingCustomer):
            return ResolvedCustomer(await self.existing(company, choice.qbo_customer_id), False)
        return await self._new_customer(request, company, portal_id, choice)

    async def existing(self, company: QboCompany, customer_id: str) -> Customer:
        """An existing customer; refused when it is gone or inactive."""
        customer: Customer | None
        try:
            customer = await company.read(Customer, customer_id)
        except NotFound:
            customer = None
        if customer is None or customer.Active is False:
            raise refused(
                Rejection(
                    RejectionCode.CUSTOMER_NOT_FOUND,
                    f"QuickBooks customer {customer_id} does not exist or is inactive; "
                    "choose another customer.",
                    field="customer",
                ),
                Failure.TARGET_GONE,
            )
        return customer

    async def name_of(self, request: InvoiceRequested, realm_id: str) -> str:
        """Who the invoice is for, as a person reads it (an existing customer is read, which
        also refuses one that is gone or inactive)."""
        choice = request.customer
        if isinstance(choice, ExistingCustomer):
            company = self.deps.qbo.company(realm_id)
            return (await self.existing(company, choice.qbo_customer_id)).DisplayName or ""
        return choice.display_name

    async def _new_customer(
        self, request: InvoiceRequested, company: QboCompany, portal_id: str, new: NewCustomer
    ) -> ResolvedCustomer:
        """Create the customer once; reuse it for later invoices of the same CRM record."""
        store = self.deps.store
        crm_key = domain.crm_record_key(new)
        if crm_key:
            linked = await store.customer_link(portal_id, company.realm_id, crm_key)
            if linked:
                return ResolvedCustomer(await self.existing(company, linked), False)
        like = new.display_name.strip().replace("%", "")[:90]
        taken = await company.query_all(
            f"SELECT * FROM Customer WHERE DisplayName LIKE {_q(like + '%')}"  # noqa: S608
        )
        for candidate in taken:
            if isinstance(candidate, Customer) and domain.same_person(new, as_candidate(candidate)):
                await self._remember(portal_id, company.realm_id, crm_key, candidate)
                return ResolvedCustomer(candidate, False)
        # Try the names in a fixed order, each with its own requestid: a rerun replays the
        # very answers of the first run, so it settles on the same customer.
        for name in domain.display_name_candidates(new):
            create = domain.customer_create(new, name, request.request_id)
            try:
                created = await company.create(
                    Customer, create.body, idempotency_key=create.request_id
                )
            except DuplicateName:
                continue
            await self._remember(portal_id, company.realm_id, crm_key, created)
            return ResolvedCustomer(created, True)
        raise refused(domain.every_name_taken(new))

    async def _remember(
        self, portal_id: str, realm_id: str, crm_key: str | None, customer: Customer
    ) -> None:
        if crm_key and customer.Id:
            await self.deps.store.link_customer(portal_id, realm_id, crm_key, customer.Id)
