"""Tidings' own add-ons for the local stack (console views, fault switches, demo job, token route)
and `tidings dev`, which composes them with the emulator (tidings/local/, which knows no app)."""
