"""Front-desk verification of Meituan and Douyin vouchers: platform accounts, deal mappings,
vouchers, scan-verify-undo, fulfilment, sync and reconciliation."""
