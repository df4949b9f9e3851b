"""Per-request DataLoaders (aiodataloader), named <Thing>By<Key>Loader."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.db import RequestDb

from .emails import EmailByIdLoader, EmailCountByParentIdLoader, EmailsByParentIdLoader, EventsByEmailIdLoader
from .items import DocumentByIdLoader, DocumentsByEmailIdLoader, InvoiceByIdLoader, RelationByIdLoader

__all__ = ["Loaders"]


@dataclass(frozen=True, slots=True)
class Loaders:
    """Every loader of one request; built once per request by `gateway.context`."""

    email_by_id: EmailByIdLoader
    events_by_email_id: EventsByEmailIdLoader
    relation_by_id: RelationByIdLoader
    document_by_id: DocumentByIdLoader
    invoice_by_id: InvoiceByIdLoader
    documents_by_email_id: DocumentsByEmailIdLoader
    emails_by_document_id: EmailsByParentIdLoader
    emails_by_invoice_id: EmailsByParentIdLoader
    emails_by_relation_id: EmailsByParentIdLoader
    email_count_by_document_id: EmailCountByParentIdLoader
    email_count_by_invoice_id: EmailCountByParentIdLoader

    @classmethod
    def create(cls, *, db: RequestDb, tenant_id: int) -> Loaders:
        return cls(
            email_by_id=EmailByIdLoader(db=db, tenant_id=tenant_id),
            events_by_email_id=EventsByEmailIdLoader(db=db, tenant_id=tenant_id),
            relation_by_id=RelationByIdLoader(db=db, tenant_id=tenant_id),
            document_by_id=DocumentByIdLoader(db=db, tenant_id=tenant_id),
            invoice_by_id=InvoiceByIdLoader(db=db, tenant_id=tenant_id),
            documents_by_email_id=DocumentsByEmailIdLoader(db=db, tenant_id=tenant_id),
            emails_by_document_id=EmailsByParentIdLoader(parent="document", db=db, tenant_id=tenant_id),
            emails_by_invoice_id=EmailsByParentIdLoader(parent="invoice", db=db, tenant_id=tenant_id),
            emails_by_relation_id=EmailsByParentIdLoader(parent="relation", db=db, tenant_id=tenant_id),
            email_count_by_document_id=EmailCountByParentIdLoader(parent="document", db=db, tenant_id=tenant_id),
            email_count_by_invoice_id=EmailCountByParentIdLoader(parent="invoice", db=db, tenant_id=tenant_id),
        )
