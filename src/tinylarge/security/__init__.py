"""Privacy and security: leakage measures, and (elsewhere) defences and attacks.

Modules are imported by name (``tinylarge.security.leakage``); this package
imports nothing itself, so each module stays optional and independent.
"""
