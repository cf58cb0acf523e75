/**
 * The dealbooks deployment the card talks to: the one public host of the deployer's dealbooks.
 *
 * HubSpot lets the card fetch from and frame only the hosts listed in `permittedUrls` of
 * ../app-hsmeta.json, and the OAuth redirect and webhook target live on the same host, so a
 * deployer changes this line and the host in ../app-hsmeta.json and
 * ../webhooks/webhooks-hsmeta.json together (tests/config.test.ts fails when they differ).
 */
export const BACKEND = "https://dealbooks.example.com";
