"""The organisation tree: platform → banks / merchants → stores."""
