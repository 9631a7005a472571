"""Tables of the platform integration."""
