"""The audit trail of downloads (``trail``) and the JSON shape the admin API and CLI print it in."""
