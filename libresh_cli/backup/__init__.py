"""Backups: the storage settings, the runner's Jobs and CronJobs, restore and clone, and the
safeguard that backs an instance up before each upgrade step."""
