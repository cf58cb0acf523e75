"""dealbooks console: the pages people use, and the CRM app card's backend. It owns no business
state: every page asks the services' HTTP APIs, with the signed-in person's portal grant."""
