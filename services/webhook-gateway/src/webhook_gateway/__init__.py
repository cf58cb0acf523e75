"""webhook-gateway: the one public door for QuickBooks and CRM webhooks. It verifies, splits
and publishes them to Kafka, answering 200 only once Kafka has acknowledged."""
