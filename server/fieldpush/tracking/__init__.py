"""What happened to an event: receipts, escalation of unacked critical events, presence."""
