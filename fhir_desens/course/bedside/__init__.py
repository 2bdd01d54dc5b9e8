"""The bedside session: its durable record, the pure session domain, and the outbox to the EHR."""
