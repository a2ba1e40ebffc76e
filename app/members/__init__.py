"""Members (the customers of an organisation) and the products it sells."""
