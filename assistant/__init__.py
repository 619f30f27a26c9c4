"""dsr: an assistant for GDPR data-subject requests."""
__version__ = "0.1.0"
