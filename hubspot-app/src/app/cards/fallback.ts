/**
 * The only strings the card holds itself: those it shows before the backend has answered
 * (loading) or when no answer came at all (error, retry, retrying). Every other label comes from the
 * answer's `text`, out of the backend's one catalogue.
 */
const FALLBACK = {
  en: {
    loading: "Loading invoices",
    error: "The invoices could not be loaded.",
    retry: "Try again",
    retrying: "dealbooks is restarting. The card tries again by itself in a few seconds.",
  },
  nl: {
    loading: "Facturen laden",
    error: "De facturen konden niet worden geladen.",
    retry: "Opnieuw proberen",
    retrying: "dealbooks start opnieuw op. De kaart probeert het over een paar seconden zelf opnieuw.",
  },
} as const;

export type FallbackText = (typeof FALLBACK)[keyof typeof FALLBACK];

/** The built-in strings for a HubSpot user locale such as "nl-nl"; English otherwise. */
export function fallbackText(locale: string | undefined): FallbackText {
  const language = (locale ?? "").toLowerCase().split(/[-_]/)[0];
  return language === "nl" ? FALLBACK.nl : FALLBACK.en;
}
