import { describe, expect, it } from "vitest";

import app from "../src/app/app-hsmeta.json";
import card from "../src/app/cards/invoices-card-hsmeta.json";
import { BACKEND } from "../src/app/cards/config";
import webhooks from "../src/app/webhooks/webhooks-hsmeta.json";

// The deployer's host is written in config.ts and in the two JSON files; they must agree.
describe("the project's configuration", () => {
  it("lets the card fetch from and frame the backend", () => {
    expect(app.config.permittedUrls.fetch).toContain(BACKEND);
    expect(app.config.permittedUrls.iframe).toContain(BACKEND);
  });

  it("sends OAuth and webhooks to the backend's host", () => {
    expect(app.config.auth.redirectUrls).toEqual([`${BACKEND}/oauth/crm/callback`]);
    expect(webhooks.config.settings.targetUrl).toBe(`${BACKEND}/webhooks/crm`);
  });

  it("shows the card on deals, contacts and companies", () => {
    expect([...card.config.objectTypes].sort()).toEqual(["companies", "contacts", "deals"]);
    expect(card.config.entrypoint).toBe("/app/cards/InvoicesCard.tsx");
  });
});
