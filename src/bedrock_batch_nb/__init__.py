"""Temporary minimal package init during integration."""
