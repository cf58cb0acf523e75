import {
  Button,
  ButtonRow,
  EmptyState,
  ErrorState,
  Flex,
  Link,
  LoadingSpinner,
  StatusTag,
  Table,
  TableBody,
  TableCell,
  TableRow,
  Text,
  hubspot,
  useExtensionActions,
  useExtensionContext,
} from "@hubspot/ui-extensions";
import { useCallback, useEffect, useRef, useState } from "react";

import {
  CardUnavailable,
  fetchCard,
  recordType,
  type CardAnswer,
  type CardApproval,
  type CardInvoice,
  type CardText,
} from "./backend";
import { fallbackText } from "./fallback";
import { day, money, stageVariant } from "./format";

hubspot.extend<"crm.record.tab">(() => <InvoicesCard />);

// The console's pages are laid out for at least this much room.
const MODAL = { width: 960, height: 720 };

// While dealbooks answers "not now" (502, 503, 504), the card asks again by itself this many
// times, this long after each answer; then it waits for the person's Try again.
export const AUTOMATIC_RETRIES = 3;
export const RETRY_DELAY_MS = 4000;

type CardState =
  | { status: "loading" }
  | { status: "failed"; text: Partial<CardText> | undefined; retrying: boolean }
  | { status: "ready"; answer: CardAnswer };

/** The record's QuickBooks invoices, listed by the backend; the console does the work. */
export function InvoicesCard() {
  const context = useExtensionContext<"crm.record.tab">();
  const actions = useExtensionActions<"crm.record.tab">();
  const type = recordType(context.crm.objectTypeId);
  const objectId = context.crm.objectId;
  const [state, setState] = useState<CardState>({ status: "loading" });
  // Only the latest request may settle the card (a retry can overtake a slow first answer).
  const latest = useRef(0);
  // The automatic retries made since the person (or the card) last asked, and the next one.
  const automatic = useRef(0);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const fetchOnce = useCallback(
    (shown: boolean) => {
      const request = ++latest.current;
      clearTimeout(timer.current);
      if (shown) setState({ status: "loading" });
      const answer = type
        ? fetchCard(type, objectId, context.user.locale ?? "en")
        : Promise.reject(new CardUnavailable(`no invoices on ${context.crm.objectTypeId} records`));
      answer.then(
        (answer) => {
          if (request !== latest.current) return;
          automatic.current = 0;
          setState({ status: "ready", answer });
        },
        (error: unknown) => {
          if (request !== latest.current) return;
          const unavailable = error instanceof CardUnavailable ? error : undefined;
          const retrying = !!unavailable?.passing && automatic.current < AUTOMATIC_RETRIES;
          setState({ status: "failed", text: unavailable?.text, retrying });
          if (retrying) {
            automatic.current += 1;
            // The error stays in view while the card asks again behind it.
            timer.current = setTimeout(() => fetchOnce(false), RETRY_DELAY_MS);
          }
        },
      );
    },
    [type, objectId, context.crm.objectTypeId, context.user.locale],
  );

  const load = useCallback(() => {
    automatic.current = 0;
    fetchOnce(true);
  }, [fetchOnce]);

  useEffect(() => {
    load();
    return () => clearTimeout(timer.current);
  }, [load]);

  const openConsole = (uri: string, title: string) =>
    // What the person did in the console shows on the card once the modal closes.
    actions.openIframeModal({ uri, title, ...MODAL }, load);

  const fallback = fallbackText(context.user.locale);
  if (state.status === "loading") {
    return <LoadingSpinner label={fallback.loading} layout="centered" />;
  }
  if (state.status === "failed") {
    return (
      <ErrorState title={state.text?.error ?? fallback.error}>
        {state.retrying && <Text>{state.text?.retrying ?? fallback.retrying}</Text>}
        <Button onClick={load}>{state.text?.retry ?? fallback.retry}</Button>
      </ErrorState>
    );
  }
  const { text, invoices, locale, approvals = [] } = state.answer;
  const { create_invoice: createUrl, add_existing: addUrl } = state.answer.actions;
  return (
    <Flex direction="column" gap="md">
      {approvals.length > 0 && (
        <Table bordered={false}>
          <TableBody>
            {approvals.map((approval) => (
              <ApprovalRow
                key={approval.request_id}
                approval={approval}
                text={text}
                locale={locale}
                onReview={() => openConsole(approval.open, text.review ?? text.title)}
              />
            ))}
          </TableBody>
        </Table>
      )}
      {invoices.length === 0 ? (
        <EmptyState title={text.title} layout="vertical" flush>
          <Text>{text.empty}</Text>
        </EmptyState>
      ) : (
        <Table bordered={false}>
          <TableBody>
            {invoices.map((invoice) => (
              <InvoiceRow
                key={`${invoice.realm_id}:${invoice.invoice_id}`}
                invoice={invoice}
                text={text}
                locale={locale}
              />
            ))}
          </TableBody>
        </Table>
      )}
      <ButtonRow>
        {createUrl && (
          <Button variant="primary" onClick={() => openConsole(createUrl, text.create)}>
            {text.create}
          </Button>
        )}
        {addUrl && (
          <Button variant="secondary" onClick={() => openConsole(addUrl, text.add_existing)}>
            {text.add_existing}
          </Button>
        )}
      </ButtonRow>
    </Flex>
  );
}

interface ApprovalRowProps {
  approval: CardApproval;
  text: CardText;
  locale: string;
  onReview: () => void;
}

function ApprovalRow({ approval, text, locale, onReview }: ApprovalRowProps) {
  return (
    <TableRow>
      <TableCell>{approval.customer ?? ""}</TableCell>
      <TableCell>{money(approval.subtotal, approval.currency, locale)}</TableCell>
      <TableCell>
        <StatusTag variant="warning">{text.waiting ?? ""}</StatusTag>
      </TableCell>
      <TableCell>
        <Button size="xs" onClick={onReview}>
          {text.review ?? ""}
        </Button>
      </TableCell>
    </TableRow>
  );
}

interface InvoiceRowProps {
  invoice: CardInvoice;
  text: CardText;
  locale: string;
}

function InvoiceRow({ invoice, text, locale }: InvoiceRowProps) {
  const number = invoice.number || invoice.invoice_id;
  return (
    <TableRow>
      <TableCell>
        {invoice.qbo_url ? (
          <Link href={{ url: invoice.qbo_url, external: true }}>{number}</Link>
        ) : (
          number
        )}
      </TableCell>
      <TableCell>{invoice.customer}</TableCell>
      <TableCell>{money(invoice.total, invoice.currency, locale)}</TableCell>
      <TableCell>{`${text.due} ${day(invoice.due_date, locale)}`}</TableCell>
      <TableCell>
        <StatusTag variant={stageVariant(invoice.stage)}>
          {text.stages[invoice.stage] ?? invoice.stage}
        </StatusTag>
      </TableCell>
    </TableRow>
  );
}
