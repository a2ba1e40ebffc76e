"""Theme activities: the bank's campaign that coupon activities and the roulette hang from."""
