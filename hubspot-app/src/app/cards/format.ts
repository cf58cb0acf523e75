import type { StatusTagProps } from "@hubspot/ui-extensions";

import type { Stage } from "./backend";

type Variant = NonNullable<StatusTagProps["variant"]>;

// One colour per meaning, as the console shows the same stages.
const STAGE_VARIANTS: Readonly<Record<Stage, Variant>> = {
  awaiting_send: "default",
  sent: "info",
  partially_paid: "warning",
  paid: "success",
  overdue: "danger",
  voided: "default",
};

/** The badge colour of an invoice stage; a stage this card does not know yet stays neutral. */
export function stageVariant(stage: string): Variant {
  return STAGE_VARIANTS[stage as Stage] ?? "default";
}

/**
 * An amount such as "1250.00" in `currency`, written for `locale`. The decimal string goes to
 * Intl as it is (read exactly, never through a float); an unknown currency code is shown as
 * the plain amount and code.
 */
export function money(amount: string, currency: string, locale: string): string {
  try {
    const format = new Intl.NumberFormat(locale, { style: "currency", currency });
    return format.format(amount as Intl.StringNumericLiteral);
  } catch {
    return `${amount} ${currency}`.trim();
  }
}

/** An ISO date ("2026-12-31") written for `locale`, the same day in every time zone; "—" when absent. */
export function day(isoDate: string | null, locale: string): string {
  if (!isoDate) {
    return "—";
  }
  const [year, month, date] = isoDate.slice(0, 10).split("-").map(Number);
  if (!year || !month || !date) {
    return isoDate;
  }
  try {
    const format = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeZone: "UTC" });
    return format.format(new Date(Date.UTC(year, month - 1, date)));
  } catch {
    return isoDate;
  }
}
