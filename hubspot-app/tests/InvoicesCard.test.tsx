import {
  Button,
  EmptyState,
  ErrorState,
  Link,
  LoadingSpinner,
  StatusTag,
  TableCell,
  TableRow,
  Text,
  hubspot,
} from "@hubspot/ui-extensions";
import { createRenderer } from "@hubspot/ui-extensions/testing";
import { afterEach, describe, expect, it, vi } from "vitest";

import type { CardAnswer, CardInvoice } from "../src/app/cards/backend";
import {
  AUTOMATIC_RETRIES,
  InvoicesCard,
  RETRY_DELAY_MS,
} from "../src/app/cards/InvoicesCard";

const DEAL = "0-3";
const CONTACT = "0-1";
const COMPANY = "0-2";

const TEXT = {
  title: "Invoices",
  empty: "No invoices yet for this record.",
  create: "Create invoice",
  add_existing: "Add existing invoices",
  retry: "Try again",
  error: "The invoices could not be loaded.",
  due: "Due",
  stages: {
    awaiting_send: "Awaiting send",
    sent: "Sent",
    partially_paid: "Partially paid",
    paid: "Paid",
    overdue: "Overdue",
    voided: "Voided",
  },
};

function invoice(overrides: Partial<CardInvoice>): CardInvoice {
  return {
    realm_id: "9130357766900496",
    invoice_id: "145",
    number: "1042",
    customer: "Acme BV",
    total: "1250.00",
    balance: "250.00",
    currency: "EUR",
    stage: "partially_paid",
    due_date: "2026-12-31",
    qbo_url: "https://app.qbo.intuit.com/app/invoice?txnId=145",
    ...overrides,
  };
}

function answer(overrides: Partial<CardAnswer> = {}): CardAnswer {
  return {
    object_type: "deal",
    object_id: "123",
    locale: "en",
    text: TEXT,
    invoices: [
      invoice({}),
      invoice({ invoice_id: "146", number: "1043", stage: "paid", total: "99.50", currency: "USD" }),
      invoice({ invoice_id: "147", number: "1044", stage: "overdue", due_date: "2026-01-15" }),
    ],
    actions: {
      create_invoice: "https://dealbooks.example.com/launch?t=create-token",
      add_existing: "https://dealbooks.example.com/launch?t=link-token",
    },
    ...overrides,
  };
}

function ok(body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status: 200,
    headers: { "Content-Type": "application/json" },
  });
}

// hubspot.fetch is the card's only way out; the spy answers in place of the backend.
function mockFetch() {
  return vi.spyOn(hubspot, "fetch");
}

function renderCard({ objectTypeId = DEAL, objectId = 123, locale = "en-us" } = {}) {
  const renderer = createRenderer("crm.record.tab");
  Object.assign(renderer.mocks.context.crm, { objectTypeId, objectId });
  renderer.mocks.context.user.locale = locale;
  renderer.render(<InvoicesCard />);
  return renderer;
}

// The texts of a row's cells after the number: customer, amount, due date.
function cellTexts(renderer: ReturnType<typeof renderCard>, row: number): (string | null)[] {
  const cells = renderer.findAll(TableRow)[row].findAll(TableCell);
  return cells.slice(1, 4).map((cell) => cell.text);
}

function buttonLabels(renderer: ReturnType<typeof renderCard>): (string | null)[] {
  return renderer.findAll(Button).map((button) => button.text);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("InvoicesCard", () => {
  it("shows a spinner, then the record's invoices with their stages", async () => {
    let respond: (response: Response) => void = () => {};
    mockFetch().mockReturnValue(new Promise((resolve) => (respond = resolve)));
    const renderer = renderCard();

    expect(renderer.find(LoadingSpinner).props.label).toBe("Loading invoices");
    respond(ok(answer()));
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));

    expect(renderer.maybeFind(LoadingSpinner)).toBeNull();
    const stages = renderer.findAll(StatusTag).map((tag) => [tag.text, tag.props.variant]);
    expect(stages).toEqual([
      ["Partially paid", "warning"],
      ["Paid", "success"],
      ["Overdue", "danger"],
    ]);
    const first = renderer.findAll(TableRow)[0];
    expect(first.find(Link).text).toBe("1042");
    expect(first.find(Link).props.href).toEqual({
      url: "https://app.qbo.intuit.com/app/invoice?txnId=145",
      external: true,
    });
    expect(cellTexts(renderer, 0)).toEqual(["Acme BV", "€1,250.00", "Due Dec 31, 2026"]);
    expect(cellTexts(renderer, 1)[1]).toBe("$99.50");
  });

  it("writes amounts and dates the way the answer's language does", async () => {
    mockFetch().mockResolvedValue(ok(answer({ locale: "nl" })));
    const renderer = renderCard({ locale: "nl-nl" });

    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));
    expect(cellTexts(renderer, 0)).toEqual(["Acme BV", "€\u00a01.250,00", "Due 31 dec 2026"]);
  });

  it("asks the backend for the record's type and id", async () => {
    const fetch = mockFetch().mockResolvedValue(ok(answer()));
    const renderer = renderCard({ objectTypeId: DEAL, objectId: 4711 });
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));

    expect(fetch).toHaveBeenCalledWith(
      "https://dealbooks.example.com/crm/cards/deal?objectId=4711&locale=en-us",
      { method: "GET" },
    );
  });

  it.each([
    [CONTACT, "contact"],
    [COMPANY, "company"],
  ])("names a %s record %s in the request", async (objectTypeId, type) => {
    const fetch = mockFetch().mockResolvedValue(ok(answer({ object_type: type as "contact" })));
    const renderer = renderCard({ objectTypeId, objectId: 88 });
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));

    expect(fetch).toHaveBeenCalledWith(
      `https://dealbooks.example.com/crm/cards/${type}?objectId=88&locale=en-us`,
      { method: "GET" },
    );
  });

  it("shows the empty state, and still offers the actions, when the record has no invoices", async () => {
    mockFetch().mockResolvedValue(ok(answer({ invoices: [] })));
    const renderer = renderCard();

    await renderer.waitFor(() => expect(renderer.maybeFind(EmptyState)).not.toBeNull());
    const empty = renderer.find(EmptyState);
    expect(empty.props.title).toBe("Invoices");
    expect(empty.find(Text).text).toBe("No invoices yet for this record.");
    expect(renderer.maybeFind(TableRow)).toBeNull();
    expect(buttonLabels(renderer)).toEqual(["Create invoice", "Add existing invoices"]);
  });

  it("shows the error when the fetch fails, and Try again fetches again and shows the list", async () => {
    const fetch = mockFetch()
      .mockRejectedValueOnce(new Error("network down"))
      .mockResolvedValueOnce(ok(answer()));
    const renderer = renderCard();

    await renderer.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
    expect(renderer.find(ErrorState).props.title).toBe("The invoices could not be loaded.");
    const retry = renderer.find(ErrorState).find(Button);
    expect(retry.text).toBe("Try again");

    retry.trigger("onClick");
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(renderer.maybeFind(ErrorState)).toBeNull();
  });

  it("says so in Dutch when the fetch fails for a Dutch user", async () => {
    mockFetch().mockRejectedValue(new Error("network down"));
    const renderer = renderCard({ locale: "nl-nl" });

    await renderer.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
    expect(renderer.find(ErrorState).props.title).toBe("De facturen konden niet worden geladen.");
    expect(renderer.find(ErrorState).find(Button).text).toBe("Opnieuw proberen");
  });

  it("uses the backend's own error text when it refuses with one", async () => {
    const refusal = { text: { error: "QuickBooks is not connected yet.", retry: "Check again" } };
    mockFetch().mockResolvedValue(new Response(JSON.stringify(refusal), { status: 503 }));
    const renderer = renderCard();

    await renderer.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
    expect(renderer.find(ErrorState).props.title).toBe("QuickBooks is not connected yet.");
    expect(renderer.find(ErrorState).find(Button).text).toBe("Check again");
  });

  it("asks again by itself while dealbooks restarts, and says so", async () => {
    vi.useFakeTimers();
    try {
      const restarting = { text: { error: "The invoices could not be loaded.", retrying: "Restarting." } };
      const fetch = mockFetch()
        .mockResolvedValueOnce(new Response(JSON.stringify(restarting), { status: 503 }))
        .mockResolvedValueOnce(new Response("", { status: 502 }))
        .mockResolvedValueOnce(ok(answer()));
      const renderer = renderCard();

      await vi.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
      expect(renderer.find(ErrorState).find(Text).text).toBe("Restarting.");
      await vi.advanceTimersByTimeAsync(RETRY_DELAY_MS);
      // A gateway's 502 carries no text: the card's own sentence, and the error stays in view.
      await vi.waitFor(() => expect(fetch).toHaveBeenCalledTimes(2));
      await vi.waitFor(() =>
        expect(renderer.find(ErrorState).find(Text).text).toBe(
          "dealbooks is restarting. The card tries again by itself in a few seconds.",
        ),
      );
      expect(renderer.maybeFind(LoadingSpinner)).toBeNull();
      await vi.advanceTimersByTimeAsync(RETRY_DELAY_MS);
      await vi.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));
      expect(fetch).toHaveBeenCalledTimes(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it("stops asking by itself after its retries, and Try again starts over", async () => {
    vi.useFakeTimers();
    try {
      const fetch = mockFetch().mockImplementation(
        async () => new Response("", { status: 503 }),
      );
      const renderer = renderCard();
      await vi.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
      for (let n = 0; n < AUTOMATIC_RETRIES + 2; n += 1) {
        await vi.advanceTimersByTimeAsync(RETRY_DELAY_MS);
      }
      expect(fetch).toHaveBeenCalledTimes(1 + AUTOMATIC_RETRIES);
      expect(renderer.find(ErrorState).maybeFind(Text)).toBeNull(); // no promise of a retry
      expect(renderer.find(ErrorState).props.title).toBe("The invoices could not be loaded.");

      renderer.find(ErrorState).find(Button).trigger("onClick");
      await vi.waitFor(() => expect(fetch).toHaveBeenCalledTimes(2 + AUTOMATIC_RETRIES));
      await vi.advanceTimersByTimeAsync(RETRY_DELAY_MS);
      expect(fetch).toHaveBeenCalledTimes(3 + AUTOMATIC_RETRIES); // counting from zero again
    } finally {
      vi.useRealTimers();
    }
  });

  it("does not ask again by itself after a refusal that is not a restart", async () => {
    vi.useFakeTimers();
    try {
      const fetch = mockFetch().mockResolvedValue(new Response("{}", { status: 403 }));
      const renderer = renderCard();
      await vi.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
      await vi.advanceTimersByTimeAsync(RETRY_DELAY_MS * 3);
      expect(fetch).toHaveBeenCalledTimes(1);
      expect(renderer.find(ErrorState).maybeFind(Text)).toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it("shows the error for an answer without invoices", async () => {
    mockFetch().mockResolvedValue(ok({ detail: "not found" }));
    const renderer = renderCard();

    await renderer.waitFor(() => expect(renderer.maybeFind(ErrorState)).not.toBeNull());
  });

  it("shows a deal's invoices waiting for approval, whose Review opens the approval", async () => {
    const waiting = answer({
      text: { ...TEXT, waiting: "Waiting for approval", review: "Review" },
      approvals: [
        {
          request_id: "0b9e7c1e",
          customer: "Summit Trek",
          subtotal: "410.00",
          currency: "USD",
          requested_at: "2026-12-07T10:00:00+00:00",
          open: "https://dealbooks.example.com/launch?t=a&to=approval&request=0b9e7c1e",
        },
      ],
    });
    mockFetch().mockResolvedValue(ok(waiting));
    const renderer = renderCard();
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(4));

    const row = renderer.findAll(TableRow)[0];
    expect(row.findAll(TableCell).map((cell) => cell.text).slice(0, 2)).toEqual([
      "Summit Trek",
      "$410.00",
    ]);
    expect(row.find(StatusTag).text).toBe("Waiting for approval");
    expect(row.find(StatusTag).props.variant).toBe("warning");
    row.find(Button).trigger("onClick");
    const [[payload]] = renderer.mocks.actions.openIframeModal.calls;
    expect([payload.uri, payload.title]).toEqual([
      "https://dealbooks.example.com/launch?t=a&to=approval&request=0b9e7c1e",
      "Review",
    ]);
  });

  it("offers no create action on a contact", async () => {
    const onContact = answer({
      object_type: "contact",
      actions: { create_invoice: null, add_existing: "https://dealbooks.example.com/launch?t=x" },
    });
    mockFetch().mockResolvedValue(ok(onContact));
    const renderer = renderCard({ objectTypeId: CONTACT });

    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));
    expect(buttonLabels(renderer)).toEqual(["Add existing invoices"]);
  });

  it("opens the console in an iframe modal at the URL of the answer", async () => {
    mockFetch().mockResolvedValue(ok(answer()));
    const renderer = renderCard();
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));
    const openIframeModal = renderer.mocks.actions.openIframeModal;

    renderer.find(Button, (button) => button.text === "Create invoice").trigger("onClick");
    renderer.find(Button, (button) => button.text === "Add existing invoices").trigger("onClick");

    expect(openIframeModal.calls.map(([payload]) => [payload.uri, payload.title])).toEqual([
      ["https://dealbooks.example.com/launch?t=create-token", "Create invoice"],
      ["https://dealbooks.example.com/launch?t=link-token", "Add existing invoices"],
    ]);
  });

  it("lists the invoices again when the console modal closes", async () => {
    const fetch = mockFetch().mockResolvedValue(ok(answer()));
    const renderer = renderCard();
    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(3));

    renderer.find(Button, (button) => button.text === "Create invoice").trigger("onClick");
    const [, onClose] = renderer.mocks.actions.openIframeModal.calls[0];
    fetch.mockResolvedValue(ok(answer({ invoices: [invoice({})] })));
    onClose?.();

    await renderer.waitFor(() => expect(renderer.findAll(TableRow)).toHaveLength(1));
    expect(fetch).toHaveBeenCalledTimes(2);
  });
});
