"""`libresh doctor`: what is wrong with a cluster and its instances, and what to do about it.

A service above the others (it reads what apps/, backup/, infra/ and cluster/ know): each check
returns a `Check` (ok, warn, problem, or not checked with why), never raises for what it finds.
"""
