"""The cluster's SMTP relay: one setting per cluster (`libresh mail set`), handed to the apps
that require mail in a connection Secret of a fixed shape, and a test message sent through it
from this machine."""
