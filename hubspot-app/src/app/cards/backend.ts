import { hubspot } from "@hubspot/ui-extensions";

import { BACKEND } from "./config";

/** The record types the card is on, as the backend names them in its path. */
export type RecordType = "deal" | "contact" | "company";

// HubSpot's object type ids of the card's `objectTypes` (invoices-card-hsmeta.json).
const RECORD_TYPES: Readonly<Record<string, RecordType>> = {
  "0-1": "contact",
  "0-2": "company",
  "0-3": "deal",
};

export type Stage = "awaiting_send" | "sent" | "partially_paid" | "paid" | "overdue" | "voided";

/** One invoice as the backend lists it; money is a decimal string beside its currency code. */
export interface CardInvoice {
  realm_id: string;
  invoice_id: string;
  number: string;
  customer: string;
  total: string;
  balance: string;
  currency: string;
  stage: Stage;
  due_date: string | null;
  qbo_url: string;
}

/** An invoice request of the deal waiting for approval (QuickBooks Online Advanced). */
export interface CardApproval {
  request_id: string;
  customer: string | null;
  subtotal: string;
  currency: string;
  requested_at: string | null;
  /** The console's approval page, through a launch ticket. */
  open: string;
}

/** The labels the card shows, in the person's language; the backend holds the catalogue. */
export interface CardText {
  title: string;
  empty: string;
  create: string;
  add_existing: string;
  retry: string;
  /** Said while the card asks again by itself, after dealbooks answered that it cannot now. */
  retrying?: string;
  error: string;
  due: string;
  /** An approval's state and button (a deal with invoices waiting for approval). */
  waiting?: string;
  review?: string;
  stages: Partial<Record<string, string>>;
}

/** The answer of `GET {BACKEND}/crm/cards/{type}?objectId={id}`. */
export interface CardAnswer {
  object_type: RecordType;
  object_id: string;
  locale: string;
  text: CardText;
  invoices: CardInvoice[];
  /** A deal's invoice requests waiting for approval; absent or empty elsewhere. */
  approvals?: CardApproval[];
  actions: {
    /** null where invoices are not created from the record (contacts and companies). */
    create_invoice: string | null;
    add_existing: string | null;
  };
}

// Answers that mean "not now": dealbooks restarts, or one of its services does.
const PASSING = new Set([502, 503, 504]);

/** Why the card has no answer: the request failed, or the backend refused it. */
export class CardUnavailable extends Error {
  /** The backend's own error and retry labels, when its refusal carried them. */
  readonly text: Partial<CardText> | undefined;
  /** The backend's status, when it answered at all. */
  readonly status: number | undefined;

  constructor(message: string, text?: Partial<CardText>, status?: number) {
    super(message);
    this.name = "CardUnavailable";
    this.text = text;
    this.status = status;
  }

  /** dealbooks answered that it cannot now: asking again shortly is likely to work. */
  get passing(): boolean {
    return this.status !== undefined && PASSING.has(this.status);
  }
}

/** The backend's name for a HubSpot object type id, or undefined for any other record. */
export function recordType(objectTypeId: string): RecordType | undefined {
  return RECORD_TYPES[objectTypeId];
}

/** The card endpoint for one record; `locale` (the HubSpot user's) picks the labels' language. */
export function cardUrl(type: RecordType, objectId: string | number, locale: string): string {
  const query = `objectId=${encodeURIComponent(String(objectId))}&locale=${encodeURIComponent(locale)}`;
  return `${BACKEND}/crm/cards/${type}?${query}`;
}

/**
 * The card's data for one record. HubSpot signs the request, and the backend takes the portal
 * from that signature, so nothing here names the portal.
 */
export async function fetchCard(
  type: RecordType,
  objectId: string | number,
  locale: string,
): Promise<CardAnswer> {
  const response = await hubspot.fetch(cardUrl(type, objectId, locale), { method: "GET" });
  const body: unknown = await response.json().catch(() => undefined);
  if (!response.ok) {
    throw new CardUnavailable(`dealbooks answered ${response.status}`, textOf(body), response.status);
  }
  if (!isCardAnswer(body)) {
    throw new CardUnavailable("dealbooks answered without invoices, text or actions");
  }
  return body;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Only what the card cannot render without; the backend owns the rest of the shape.
function isCardAnswer(value: unknown): value is CardAnswer {
  return (
    isObject(value) &&
    Array.isArray(value.invoices) &&
    isObject(value.text) &&
    isObject(value.actions) &&
    typeof value.locale === "string"
  );
}

function textOf(body: unknown): Partial<CardText> | undefined {
  return isObject(body) && isObject(body.text) ? (body.text as Partial<CardText>) : undefined;
}
