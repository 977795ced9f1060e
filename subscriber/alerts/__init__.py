"""Alerts: rules over container events and the live fleet, recorded, served and notified.

rules (configuration) -> engine (pure) -> service (thread: records in store, hands to notify).
api serves events and alerts over HTTP; message composes what a notification says.
"""
