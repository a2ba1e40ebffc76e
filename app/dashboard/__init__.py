"""The home page: figures across the business lines an operator can see."""
